//! Room tokens over real sockets: a real server with the JWT verifier, real WebSocket and
//! HTTP clients, tokens signed with `jsonwebtoken` (and forged by hand for the attacks).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{Client, Server, http_get};
use serde_json::{Value, json};
use switchboard_auth::{JwtVerifier, MintClaims, SigningAlgorithm, SigningKey, mint};
use switchboard_core::auth::AuthConfig;
use switchboard_core::ice::{IceConfig, TurnRest};
use switchboard_proto::IceServer;
use switchboard_server::ServerConfig;

const SECRET: &[u8] = b"room-token-secret-of-32-bytes-ok";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An RSA key pair made by `openssl`: (private PEM, public PEM).
fn rsa_keys() -> (Vec<u8>, Vec<u8>) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("server-auth-keys");
    std::fs::create_dir_all(&dir).unwrap();
    // Tests run at once (threads or processes): each pair gets its own files.
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("rsa-{}-{n}", std::process::id());
    let (private, public) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    let run = |args: &[&std::ffi::OsStr]| {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl {args:?}");
    };
    run(&[
        "genpkey".as_ref(),
        "-algorithm".as_ref(),
        "RSA".as_ref(),
        "-out".as_ref(),
        private.as_os_str(),
    ]);
    run(&[
        "pkey".as_ref(),
        "-pubout".as_ref(),
        "-in".as_ref(),
        private.as_os_str(),
        "-out".as_ref(),
        public.as_os_str(),
    ]);
    (
        std::fs::read(private).unwrap(),
        std::fs::read(public).unwrap(),
    )
}

/// A server requiring tokens signed with [`SECRET`] (HS256) or the RSA key (RS256), with
/// minted TURN credentials.
async fn server(rsa_public: &[u8]) -> Server {
    let mut verifier = JwtVerifier::new();
    verifier.add_secret(None, SECRET).unwrap();
    verifier.add_public_key_pem(None, rsa_public).unwrap();
    let mut config = ServerConfig::default();
    config.hub.auth = Some(AuthConfig::new(Arc::new(verifier)));
    config.hub.ice = IceConfig {
        servers: vec![IceServer::stun("stun:{host}:3478")],
        turn: Some(TurnRest {
            secret: "turn-secret".into(),
            urls: vec!["turn:{host}:3478".into()],
            ttl: Duration::from_secs(600),
            user_prefix: "0123abcd-".into(),
        }),
    };
    Server::start(config).await
}

fn claims(room: &str) -> MintClaims {
    MintClaims {
        exp: now() + 600,
        sub: Some("alice".into()),
        app: Some("LiveApp".into()),
        room: Some(room.into()),
        ..MintClaims::default()
    }
}

fn hs(c: &MintClaims) -> String {
    mint(&SigningKey::secret(SECRET), c).unwrap()
}

async fn client(server: &Server, token: Option<&str>) -> Client {
    let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
    Client::connect(&format!("ws://{}/LiveApp/websocket{query}", server.addr)).await
}

async fn expect_refused(c: &mut Client, room: &str, reason: &str) {
    c.expect_exact(json!({
        "command": "error",
        "definition": "unauthorized_access",
        "streamId": room,
        "reason": reason,
    }))
    .await;
}

#[tokio::test]
async fn a_valid_token_on_the_url_or_in_the_join_makes_a_call() {
    let (_, public) = rsa_keys();
    let server = server(&public).await;
    let mut a = client(&server, Some(&hs(&claims("r1")))).await;
    a.join("r1").await;
    a.expect(json!({"definition": "joined"})).await;
    let mut b = client(&server, None).await;
    b.send_json(json!({"command": "join", "streamId": "r1", "token": hs(&claims("r*"))}))
        .await;
    b.expect(json!({"definition": "joined"})).await;
    a.expect_exact(json!({"command": "start", "streamId": "r1"}))
        .await;
    a.send_json(
        json!({"command": "takeConfiguration", "streamId": "r1", "type": "offer", "sdp": "v=0"}),
    )
    .await;
    b.expect(json!({"command": "takeConfiguration", "type": "offer"}))
        .await;
}

#[tokio::test]
async fn every_bad_token_is_refused_and_the_room_hears_nothing() {
    let (rsa_private, rsa_public) = rsa_keys();
    let server = server(&rsa_public).await;
    let mut a = client(&server, Some(&hs(&claims("r1")))).await;
    let mut b = client(&server, Some(&hs(&claims("r1")))).await;
    a.join("r1").await;
    a.expect(json!({"definition": "joined"})).await;
    b.join("r1").await;
    b.expect(json!({"definition": "joined"})).await;
    a.expect(json!({"command": "start"})).await;

    let good = hs(&claims("r1"));
    let parts: Vec<&str> = good.split('.').collect();
    let payload = b64(json!({"exp": now() + 600, "room": "r1", "app": "LiveApp"})
        .to_string()
        .as_bytes());
    let alg_none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(
            json!({"exp": now() + 600, "room": "*", "app": "LiveApp", "sub": "root"})
                .to_string()
                .as_bytes()
        ),
        parts[2]
    );
    let mut expired = claims("r1");
    expired.exp = now() - 120;
    let mut early = claims("r1");
    early.nbf = Some(now() + 600);
    let mut other_app = claims("r1");
    other_app.app = Some("OtherApp".into());
    let wrong_key = mint(
        &SigningKey::secret(b"not-the-server-secret-not-at-all"),
        &claims("r1"),
    )
    .unwrap();
    // The RSA public key (which an attacker can know) used as an HS256 secret.
    let confused = mint(&SigningKey::secret(&rsa_public), &claims("r1")).unwrap();
    // A real RS256 token is fine (the server has the public key).
    let rs = mint(
        &SigningKey::private_pem(SigningAlgorithm::RS256, &rsa_private).unwrap(),
        &claims("r2"),
    )
    .unwrap();
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "a room token is required"),
        (Some(hs(&expired)), "the token has expired"),
        (Some(hs(&early)), "the token is not valid yet"),
        (Some(hs(&claims("r9"))), "the token is for another room"),
        (Some(hs(&other_app)), "the token is for another app"),
        (Some(wrong_key), "the token's signature is not valid"),
        (Some(alg_none), "the token's algorithm is not accepted"),
        (Some(confused), "the token's signature is not valid"),
        (Some(tampered), "the token's signature is not valid"),
        (Some("junk".into()), "the token is not a well-formed JWT"),
    ];
    let mut intruder = client(&server, None).await;
    for (token, reason) in &cases {
        let mut join = json!({"command": "join", "streamId": "r1"});
        if let Some(t) = token {
            join["token"] = json!(t);
        }
        intruder.send_json(join).await;
        expect_refused(&mut intruder, "r1", reason).await;
    }
    // The same refusals when the token comes on the URL (a fresh connection each).
    for (token, reason) in cases.iter().skip(1) {
        let mut c = client(&server, token.as_deref()).await;
        c.join("r1").await;
        expect_refused(&mut c, "r1", reason).await;
    }
    // The members of the room heard nothing and still talk.
    a.expect_nothing_else().await;
    b.expect_nothing_else().await;
    a.send_json(json!({"command": "takeCandidate", "streamId": "r1", "label": 0, "id": "0", "candidate": "c"}))
        .await;
    b.expect(json!({"command": "takeCandidate"})).await;
    // The refused connection is still usable: an RS256 token admits it to its room.
    intruder
        .send_json(json!({"command": "join", "streamId": "r2", "token": rs}))
        .await;
    intruder
        .expect(json!({"definition": "joined", "streamId": "r2"}))
        .await;

    let (_, body) = http_get(server.addr, "/api/v1/stats", "").await;
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["hub"]["auth_refused"], json!(2 * cases.len() - 1));
}

#[tokio::test]
async fn turn_credentials_only_with_a_token_and_named_after_its_identity() {
    let (_, public) = rsa_keys();
    let server = server(&public).await;
    // HTTP: no token, a bad one → 401 with the reason.
    let (status, body) = http_get(server.addr, "/api/v1/ice-servers", "").await;
    assert!(status.contains("401"), "{status}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!({"error": "unauthorized_access", "reason": "a room token is required"})
    );
    let (status, _) = http_get(
        server.addr,
        "/api/v1/ice-servers",
        "Authorization: Bearer x.y.z\r\n",
    )
    .await;
    assert!(status.contains("401"), "{status}");
    // A token as Bearer or ?token=: TURN with `u.<sub>` as the user, expiring within the TTL.
    let token = hs(&claims("r1"));
    for (path, headers) in [
        (
            "/api/v1/ice-servers".to_owned(),
            format!("Authorization: Bearer {token}\r\n"),
        ),
        (format!("/api/v1/ice-servers?token={token}"), String::new()),
    ] {
        let (status, body) = http_get(server.addr, &path, &headers).await;
        assert!(status.contains("200"), "{status}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let user = v["iceServers"][1]["username"].as_str().unwrap();
        let (expiry, name) = user.split_once(':').unwrap();
        assert_eq!(name, "u.alice");
        let expiry: u64 = expiry.parse().unwrap();
        assert!(
            expiry <= now() + 600 && expiry + 5 >= now() + 600,
            "{expiry}"
        );
    }
    // A token without the TURN grant: STUN only.
    let mut stun_only = claims("r1");
    stun_only.turn = Some(false);
    let (_, body) = http_get(
        server.addr,
        &format!("/api/v1/ice-servers?token={}", hs(&stun_only)),
        "",
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["iceServers"].as_array().unwrap().len(), 1);
    assert!(
        v["iceServers"][0]["urls"][0]
            .as_str()
            .unwrap()
            .starts_with("stun:")
    );
    // The WebSocket: without a token STUN only, with one TURN for its identity.
    let mut anon = client(&server, None).await;
    anon.send(r#"{"command":"getIceServerConfig"}"#).await;
    let v = anon.recv().await;
    assert_eq!(v["iceServers"].as_array().unwrap().len(), 1, "{v}");
    let mut alice = client(&server, Some(&token)).await;
    alice.send(r#"{"command":"getIceServerConfig"}"#).await;
    let v = alice.recv().await;
    assert!(
        v["iceServers"][1]["username"]
            .as_str()
            .unwrap()
            .ends_with(":u.alice"),
        "{v}"
    );
    let (_, body) = http_get(server.addr, "/api/v1/stats", "").await;
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["http"]["ice_unauthorized"], json!(2));
}

#[tokio::test]
async fn without_auth_settings_rooms_stay_open() {
    let server = Server::default().await;
    let mut a = client(&server, Some("not-a-token")).await;
    a.join("r").await;
    a.expect(json!({"definition": "joined"})).await;
    let (status, _) = http_get(server.addr, "/api/v1/ice-servers", "").await;
    assert!(status.contains("200"), "{status}");
}

#[tokio::test]
async fn peerjs_http_routes_take_the_token_as_key() {
    let (_, public) = rsa_keys();
    let server = server(&public).await;
    let token = hs(&claims("r1"));
    let (status, body) = http_get(server.addr, &format!("/peerjs/{token}/id"), "").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "alice", "a token with a sub gets its sub as the id");
    let mut anonymous = claims("r1");
    anonymous.sub = None;
    let (_, body) = http_get(server.addr, &format!("/peerjs/{}/id", hs(&anonymous)), "").await;
    assert_eq!(body.len(), 36, "a UUID: {body}");
    // The configured key is no longer a key.
    let (status, body) = http_get(server.addr, "/peerjs/peerjs/id", "").await;
    assert!(status.contains("401"), "{status}");
    assert_eq!(
        body,
        "unauthorized_access: the token is not a well-formed JWT"
    );
}
