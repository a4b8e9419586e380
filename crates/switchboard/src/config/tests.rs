//! Tests of the settings: flags, environment and file merged, and every refusal.
#![allow(clippy::unwrap_used)]
use super::*;
use clap::{CommandFactory, Parser};

#[derive(Debug, Parser)]
struct T {
    #[command(flatten)]
    args: ServeArgs,
}

fn resolve(args: &[&str]) -> anyhow::Result<Resolved> {
    T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))?
        .args
        .resolve()
}

fn parse(args: &[&str]) -> anyhow::Result<(SocketAddr, ServerConfig)> {
    resolve(args).map(|r| (r.listen, r.server))
}

#[test]
fn a_bare_port_for_listen_gets_an_example() {
    let e = resolve(&["--listen", "7087"]).unwrap_err().to_string();
    assert!(
        e.contains("expected ADDRESS:PORT, e.g. 0.0.0.0:7087"),
        "{e}"
    );
    let e = resolve(&["--listen", "localhost"]).unwrap_err().to_string();
    assert!(e.contains("e.g. 0.0.0.0:5080"), "{e}");
}

#[test]
fn defaults_are_useful() {
    let r = resolve(&[]).unwrap();
    assert_eq!(r.listen, "0.0.0.0:5080".parse().unwrap());
    assert!(r.default_listen, "no address given: IPv6 and IPv4");
    assert!(
        !resolve(&["--listen", "0.0.0.0:5080"])
            .unwrap()
            .default_listen
    );
    assert_eq!(r.server.hub.idle_timeout, Duration::from_secs(20));
    // The built-in STUN/TURN server runs and is advertised (URLs are set once it has
    // bound its port); its secret is random per process.
    let turn = r.turn.unwrap();
    assert!(turn.advertise);
    assert_eq!(turn.config.secret.len(), 64);
    assert_ne!(
        turn.config.secret,
        resolve(&[]).unwrap().turn.unwrap().config.secret
    );
    assert_eq!(turn.config.listen[0], "0.0.0.0:3478".parse().unwrap());
    assert_eq!(turn.config.protected_ports, vec![5080]);
    assert_eq!(turn.ttl, Duration::from_secs(3600));
    assert!(r.server.hub.ice.servers.is_empty());
    assert_eq!(r.server.hub.sio_max_room_peers, 64);
}

#[test]
fn peerjs_options() {
    let (_, cfg) = parse(&[
        "--peerjs-path",
        "apps/pj",
        "--peerjs-key",
        "k",
        "--peerjs-expire-timeout",
        "2000",
        "--peerjs-alive-timeout",
        "90000",
        "--peerjs-concurrent-limit",
        "7",
        "--peerjs-allow-discovery",
        "true",
    ])
    .unwrap();
    assert_eq!(cfg.peerjs_path, "/apps/pj/");
    let pj = &cfg.hub.peerjs;
    assert_eq!(&*pj.key, "k");
    assert_eq!(pj.expire_timeout, Duration::from_secs(2));
    assert_eq!(pj.alive_timeout, Duration::from_secs(90));
    assert_eq!(pj.concurrent_limit, 7);
    assert!(pj.allow_discovery);
    assert_eq!(parse(&[]).unwrap().1.peerjs_path, "/peerjs/");
    for bad in [
        &["--peerjs-path", "/"][..],
        &["--peerjs-path", "a b"],
        &["--peerjs-key", ""],
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn socketio_room_size() {
    let (_, cfg) = parse(&["--socketio-max-room-peers", "8"]).unwrap();
    assert_eq!(cfg.hub.sio_max_room_peers, 8);
    let e = parse(&["--socketio-max-room-peers", "1"]).unwrap_err();
    assert!(e.to_string().contains("at least 2"), "{e}");
}

#[test]
fn builtin_turn_flags() {
    let r = resolve(&[
        "--turn-listen",
        "127.0.0.1:0",
        "--turn-relay-ports",
        "50000-50100",
        "--turn-allow-peers",
        "10.0.0.0/8,127.0.0.1/32",
        "--turn-user-quota",
        "2",
        "--turn-external-ip",
        "198.51.100.7",
        "--turn-secret",
        "s",
    ])
    .unwrap();
    let t = r.turn.unwrap().config;
    assert_eq!(t.relay_ports, (50000, 50100));
    assert_eq!(t.policy.allow.len(), 2);
    assert_eq!(t.user_quota, 2);
    assert_eq!(t.secret, "s");
    assert_eq!(t.external_ip, Some("198.51.100.7".parse().unwrap()));
    assert!(resolve(&["--turn-relay-ports", "60000-50000"]).is_err());
    assert!(resolve(&["--turn-relay-ports", "x"]).is_err());
    assert!(resolve(&["--turn-user-quota", "0"]).is_err());
    assert!(resolve(&["--turn-tls-cert", "c.pem"]).is_err());
    // Explicit ICE servers: the built-in server runs but is not advertised.
    let r = resolve(&["--ice-servers", "stun:{host}:3478"]).unwrap();
    assert!(!r.turn.unwrap().advertise);
    assert_eq!(r.server.hub.ice.servers.len(), 1);
    // Off: a public STUN server, unless ICE servers are explicitly none.
    let r = resolve(&["--builtin-turn", "false"]).unwrap();
    assert!(r.turn.is_none());
    assert_eq!(r.server.hub.ice.servers.len(), 1);
    let r = resolve(&["--builtin-turn", "false", "--ice-servers", ""]).unwrap();
    assert!(r.server.hub.ice.servers.is_empty() && r.server.hub.ice.turn.is_none());
    // turn_urls pointing at the built-in server are signed with its secret.
    let r = resolve(&["--builtin-turn", "true", "--turn-urls", "turn:{host}:3478"]).unwrap();
    let secret = r.turn.unwrap().config.secret;
    assert_eq!(r.server.hub.ice.turn.unwrap().secret, secret);
}

fn urls_of(cfg: &ServerConfig) -> Vec<String> {
    cfg.hub
        .ice
        .servers
        .iter()
        .map(|s| s.urls.join(" "))
        .collect()
}

#[test]
fn flags_beat_file() {
    let dir = std::env::temp_dir().join(format!("sb-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("c.toml");
    std::fs::write(
        &f,
        "listen = \"127.0.0.1:9000\"\nidle_timeout_secs = 30\n[[ice_servers]]\nurls = [\"turn:t:3478\"]\nusername = \"u\"\ncredential = \"p\"\n",
    )
    .unwrap();
    let path = f.to_str().unwrap();
    let (listen, cfg) = parse(&["--config", path, "--idle-timeout-secs", "12"]).unwrap();
    assert_eq!(listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(cfg.hub.idle_timeout, Duration::from_secs(12));
    assert_eq!(cfg.hub.ice.servers[0].username.as_deref(), Some("u"));
    std::fs::write(&f, "nonsense_key = 1\n").unwrap();
    let err = parse(&["--config", path]).unwrap_err();
    assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
    // One declaration per setting: the file takes what flags take (URL strings with
    // turn_username / turn_credential), beside whole tables.
    std::fs::write(
        &f,
        "ice_servers = [\"stun:s:1\", \"turn:t:2\", { urls = [\"turns:x:3\"] }]\n\
         turn_username = \"u\"\nturn_credential = \"p\"\nmax_joins_per_sec = 3\n",
    )
    .unwrap();
    let (_, cfg) = parse(&["--config", path]).unwrap();
    let urls = urls_of(&cfg);
    assert_eq!(urls, ["turns:x:3", "stun:s:1", "turn:t:2"]);
    assert_eq!(cfg.hub.ice.servers[2].credential.as_deref(), Some("p"));
    assert_eq!(cfg.hub.limits.joins, RateLimit::new(3, 6));
    // A flag list replaces the file's list whole.
    let (_, cfg) = parse(&["--config", path, "--ice-servers", "stun:f:4"]).unwrap();
    let urls = urls_of(&cfg);
    assert_eq!(urls, ["stun:f:4"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ice_flags() {
    let (_, cfg) = parse(&[
        "--ice-servers",
        "stun:a:1,turn:b:2",
        "--turn-username",
        "u",
        "--turn-credential",
        "p",
    ])
    .unwrap();
    assert_eq!(cfg.hub.ice.servers.len(), 2);
    assert!(cfg.hub.ice.servers[1].is_turn());
    let (_, cfg) = parse(&[
        "--turn-secret",
        "s",
        "--turn-urls",
        "turn:{host}:3478",
        "--turn-ttl-secs",
        "60",
    ])
    .unwrap();
    let turn = cfg.hub.ice.turn.unwrap();
    assert_eq!((turn.urls.len(), turn.ttl), (1, Duration::from_secs(60)));
    // A secret alone configures the built-in server.
    assert!(parse(&["--turn-secret", "s"]).is_ok());
    assert!(parse(&["--builtin-turn", "false", "--turn-secret", "s"]).is_err());
    // External TURN URLs need the shared secret (the built-in server is then off).
    assert!(parse(&["--turn-urls", "turn:x:1"]).is_err());
    assert!(parse(&["--turn-secret", "s", "--turn-urls", "stun:x:1"]).is_err());
    assert!(parse(&["--ice-servers", "turn:b:2"]).is_err());
    assert!(parse(&["--ice-servers", "http://x"]).is_err());
    assert!(parse(&["--idle-timeout-secs", "0"]).is_err());
}

#[test]
fn auth_tls_origins_and_cluster_settings_resolve_or_are_refused() {
    // Room tokens: off by default; a secret turns them on with the default skew.
    assert!(parse(&[]).unwrap().1.hub.auth.is_none());
    let (_, cfg) = parse(&["--auth-secret", "0123456789abcdef0123456789abcdef"]).unwrap();
    assert_eq!(
        cfg.hub.auth.map(|a| a.skew),
        Some(std::time::Duration::from_secs(30))
    );
    let e = parse(&["--auth-skew-secs", "5"]).unwrap_err().to_string();
    assert!(e.contains("auth_skew_secs needs"), "{e}");
    // TLS files go in pairs (clap says so before resolve does).
    let e = resolve(&["--tls-cert", "c.pem"]).unwrap_err().to_string();
    assert!(e.contains("--tls-key"), "{e}");
    let r = resolve(&[
        "--tls-cert",
        "c.pem",
        "--tls-key",
        "k.pem",
        "--tls-reload-secs",
        "0",
    ])
    .unwrap();
    assert!(r.tls.is_some_and(|t| t.reload_every.is_none()));
    // Origins: exact and patterns; junk is refused with the rule.
    let (_, cfg) = parse(&["--allowed-origins", "https://a.example.com,*.example.org"]).unwrap();
    assert_eq!(cfg.allowed_origins.map(|o| o.len()), Some(2));
    let e = parse(&["--allowed-origins", "example.com"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected an origin"), "{e}");
    // Cluster: a URL gives a random node id unless one is set; a node id alone is refused.
    let e = parse(&["--redis-url", "redis://127.0.0.1:6379"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs turn_secret"), "{e}");
    let (_, cfg) = parse(&[
        "--redis-url",
        "redis://127.0.0.1:6379",
        "--turn-secret",
        "shared",
    ])
    .unwrap();
    assert_eq!(cfg.cluster.map(|c| c.node_id.len()), Some(12));
    assert_eq!(cfg.hub.route_cache, 100_000);
    let (_, cfg) = parse(&["--cluster-route-cache", "0"]).unwrap();
    assert_eq!(cfg.hub.route_cache, 0);
    let e = parse(&["--node-id", "n1"]).unwrap_err().to_string();
    assert!(e.contains("node_id needs redis_url"), "{e}");
    let e = parse(&["--redis-url", "http://nope", "--turn-secret", "s"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("redis_url"), "{e}");
}

#[test]
fn mesh_room_size() {
    assert_eq!(parse(&[]).unwrap().1.hub.max_mesh_peers, 8);
    let (_, cfg) = parse(&["--max-mesh-peers", "4"]).unwrap();
    assert_eq!(cfg.hub.max_mesh_peers, 4);
    for bad in ["1", "33"] {
        let e = parse(&["--max-mesh-peers", bad]).unwrap_err();
        assert!(
            e.to_string().contains("max_mesh_peers must be 2 to 32"),
            "{e}"
        );
    }
}

/// The configuration file the Debian package installs (and the container image documents):
/// every setting is in it, commented out, and each example value is one the file accepts.
#[test]
fn the_packaged_config_file_lists_every_setting_with_a_valid_example() {
    let text = include_str!("../../../../deploy/switchboard.toml");
    // As shipped (everything commented out) it is the defaults.
    let shipped: Settings = toml::from_str(text).unwrap();
    assert!(
        serde_json::to_value(&shipped)
            .unwrap()
            .as_object()
            .unwrap()
            .values()
            .all(serde_json::Value::is_null)
    );
    let keys: Vec<String> = T::command()
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| *l != "config" && *l != "help")
        .map(|l| l.replace('-', "_"))
        .collect();
    assert!(keys.len() > 60, "{keys:?}");
    // Uncomment the first `#key = value` line of every setting.
    let mut seen = std::collections::BTreeSet::new();
    let uncommented: String = text
        .lines()
        .map(
            |line| match line.strip_prefix('#').and_then(|l| l.split_once(" = ")) {
                Some((key, _)) if keys.iter().any(|k| k == key) && seen.insert(key.to_owned()) => {
                    &line[1..]
                }
                _ => line,
            },
        )
        .map(|l| format!("{l}\n"))
        .collect();
    let missing: Vec<_> = keys.iter().filter(|k| !seen.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "not in deploy/switchboard.toml: {missing:?}"
    );
    let all: Settings = toml::from_str(&uncommented).unwrap();
    let unset: Vec<String> = serde_json::to_value(&all)
        .unwrap()
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.is_null())
        .map(|(k, _)| k.clone())
        .collect();
    assert!(unset.is_empty(), "examples that set nothing: {unset:?}");
    // The `[[ice_servers]]` table example, on its own.
    let table: String = text
        .lines()
        .skip_while(|l| *l != "#[[ice_servers]]")
        .take_while(|l| !l.is_empty())
        .map(|l| format!("{}\n", &l[1..]))
        .collect();
    let with_table: Settings = toml::from_str(&table).unwrap();
    assert!(
        matches!(&with_table.ice_servers, Some(v) if matches!(v[..], [IceServerSetting::Server(_)])),
        "{table}"
    );
}
