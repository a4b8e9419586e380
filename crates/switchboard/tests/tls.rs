//! TLS in the binary: a test CA (rcgen) signs the server's certificate; a rustls client that
//! trusts only that CA speaks WSS and HTTPS to `switchboard serve --tls-cert`, and the
//! certificate is replaced (SIGHUP, and a file change) while a call is connected.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::start_switchboard;
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// A CA and certificates for `localhost` / 127.0.0.1 signed by it.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = std::env::temp_dir().join(format!("sb-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { issuer, dir }
    }

    /// Writes a fresh leaf certificate and key to `cert.pem` / `key.pem`; its DER.
    fn issue(&self) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        // Written next to the target and renamed in, as ACME clients do.
        for (name, text) in [("cert.pem", cert.pem()), ("key.pem", key.serialize_pem())] {
            let tmp = self.dir.join(format!("{name}.tmp"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, self.dir.join(name)).unwrap();
        }
        cert.der().clone()
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    /// `switchboard serve` with this CA's `cert.pem` and `key.pem`, reloaded every
    /// `reload_secs` (0: on SIGHUP only), and `extra` arguments. TURN over TLS takes a free
    /// loopback port (its default, 5349 on every address, would collide between tests running
    /// at once).
    fn serve(&self, reload_secs: &str, extra: &[&str]) -> common::Switchboard {
        let (cert, key) = (self.path("cert.pem"), self.path("key.pem"));
        let mut args = vec!["--tls-cert", &cert, "--tls-key", &key];
        args.extend(["--tls-reload-secs", reload_secs]);
        if !extra.contains(&"--turn-tls-listen") {
            args.extend(["--turn-tls-listen", "127.0.0.1:0"]);
        }
        args.extend(extra);
        start_switchboard(&args, &[])
    }

    fn connector(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection to `port`, verified against the CA as `localhost`.
async fn tls(ca: &Ca, port: u16) -> Tls {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    ca.connector()
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

fn presented(stream: &Tls) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

type Wss = tokio_tungstenite::WebSocketStream<Tls>;

/// A WSS client joined to `room`; the certificate it was shown.
async fn join(ca: &Ca, port: u16, room: &str) -> (Wss, CertificateDer<'static>) {
    let stream = tls(ca, port).await;
    let cert = presented(&stream);
    let url = format!("wss://localhost:{port}/LiveApp/websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    ws.send(Message::text(format!(
        r#"{{"command":"join","streamId":"{room}"}}"#
    )))
    .await
    .unwrap();
    assert!(next(&mut ws).await.contains("joined"));
    (ws, cert)
}

async fn next(ws: &mut Wss) -> String {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            return t.to_string();
        }
    }
}

/// The certificate a new handshake gets, once it is `want` (within 10 s).
async fn wait_for_cert(ca: &Ca, port: u16, want: &CertificateDer<'static>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if presented(&tls(ca, port).await) == *want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hup(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test]
async fn wss_and_https_with_a_certificate_replaced_during_a_call() {
    let ca = Ca::new("reload");
    let first = ca.issue();
    // Reloaded on SIGHUP only, so the file-change path is tested on its own below.
    let sb = ca.serve("0", &[]);
    let port = sb.port;
    // HTTPS.
    let mut s = tls(&ca, port).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // A call over WSS.
    let (mut a, shown) = join(&ca, port, "tls-room").await;
    assert_eq!(shown, first);
    let (mut b, _) = join(&ca, port, "tls-room").await;
    assert!(next(&mut a).await.contains("start"));
    // TURN over TLS uses the same certificate by default.
    let turns = sb.turns_port.expect("TURN over TLS is on with --tls-cert");
    assert_eq!(presented(&tls(&ca, turns).await), first);

    // A new certificate, picked up on SIGHUP: new handshakes see it (HTTP and TURN), the
    // call goes on over the connections made before.
    let second = ca.issue();
    hup(sb.pid());
    wait_for_cert(&ca, port, &second).await;
    assert_eq!(presented(&tls(&ca, turns).await), second);
    a.send(Message::text(
        r#"{"command":"takeConfiguration","streamId":"tls-room","type":"offer","sdp":"v=0"}"#,
    ))
    .await
    .unwrap();
    assert!(next(&mut b).await.contains("takeConfiguration"));

    // A broken file (a half-written renewal) keeps the current certificate.
    std::fs::write(
        Path::new(&ca.path("cert.pem")),
        "-----BEGIN CERTIFICATE-----\nnot",
    )
    .unwrap();
    hup(sb.pid());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(presented(&tls(&ca, port).await), second);
    let log = sb.log.lock().unwrap().join("\n");
    assert!(log.contains("TLS certificate not reloaded"), "{log}");
    let _ = std::fs::remove_dir_all(&ca.dir);
}

#[tokio::test]
async fn a_changed_certificate_file_is_picked_up_without_a_signal() {
    let ca = Ca::new("watch");
    ca.issue();
    let sb = ca.serve("1", &[]);
    // File times have a one-second granularity on some file systems.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = ca.issue();
    wait_for_cert(&ca, sb.port, &second).await;
    // Plain HTTP to the TLS port is a failed handshake, counted; the server carries on.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", sb.port))
        .await
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    let mut s = tls(&ca, sb.port).await;
    s.write_all(b"GET /api/v1/stats HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    assert!(text.contains(r#""tls_handshake_failures":1"#), "{text}");
    let _ = std::fs::remove_dir_all(&ca.dir);
}

/// `switchboard health` with the server's TLS settings asks over HTTPS (and plain HTTP to the
/// TLS port fails).
#[test]
fn health_speaks_https_when_the_server_does() {
    let ca = Ca::new("health");
    ca.issue();
    let sb = ca.serve("0", &[]);
    let (cert, key) = (ca.path("cert.pem"), ca.path("key.pem"));
    let addr = format!("127.0.0.1:{}", sb.port);
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("health")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--addr", &addr, "--tls-cert", &cert, "--tls-key", &key]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), format!("ok: https://{addr}/healthz"));
    let out = run(&["--addr", &addr, "--timeout-secs", "3"]);
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(&ca.dir);
}
