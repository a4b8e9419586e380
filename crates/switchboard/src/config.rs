//! `switchboard serve` settings: flags, environment and TOML file, merged over defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;
use switchboard_core::ice::{DEFAULT_TURN_TTL, TurnRest};
use switchboard_proto::{IceServer, is_ice_url, is_turn_url};
use switchboard_server::{DEFAULT_LISTEN, ServerConfig};

/// Flags of `switchboard serve`. Each has an environment variable; flags win over the
/// environment, which wins over the `--config` file, which wins over the defaults.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TOML file with any of the settings below (snake_case keys, e.g. `idle_timeout_secs`).
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Address and port to listen on [default: 0.0.0.0:5080].
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Close a connection that sent nothing for this many seconds [default: 20].
    #[arg(long, env = "SWITCHBOARD_IDLE_TIMEOUT_SECS")]
    idle_timeout_secs: Option<u64>,
    /// Most simultaneous WebSocket connections [default: 50000].
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Largest WebSocket message accepted, in bytes; larger closes with 1009 [default: 65536].
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_SIZE")]
    max_message_size: Option<usize>,
    /// Messages queued per connection before a non-reading client is dropped [default: 128].
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE")]
    outbound_queue: Option<usize>,
    /// Seconds to wait for clients to close on shutdown [default: 5].
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_GRACE_SECS")]
    shutdown_grace_secs: Option<u64>,
    /// ICE server URLs sent to clients, comma-separated (stun:, turn:, turns:)
    /// [default: stun:stun.l.google.com:19302].
    #[arg(long, env = "SWITCHBOARD_ICE_SERVERS", value_delimiter = ',')]
    ice_servers: Option<Vec<String>>,
    /// Username for the turn:/turns: URLs of --ice-servers.
    #[arg(long, env = "SWITCHBOARD_TURN_USERNAME")]
    turn_username: Option<String>,
    /// Credential for the turn:/turns: URLs of --ice-servers.
    #[arg(long, env = "SWITCHBOARD_TURN_CREDENTIAL", hide_env_values = true)]
    turn_credential: Option<String>,
    /// Shared secret of TURN servers using coturn's REST-API auth (`use-auth-secret`,
    /// `static-auth-secret`): clients get short-lived credentials minted with it.
    #[arg(long, env = "SWITCHBOARD_TURN_SECRET", hide_env_values = true)]
    turn_secret: Option<String>,
    /// TURN URLs the minted credentials are for, comma-separated; `{host}` becomes the host
    /// the client used to reach Switchboard (e.g. `turn:{host}:3478`).
    #[arg(long, env = "SWITCHBOARD_TURN_URLS", value_delimiter = ',')]
    turn_urls: Option<Vec<String>>,
    /// Lifetime of minted TURN credentials, in seconds [default: 3600].
    #[arg(long, env = "SWITCHBOARD_TURN_TTL_SECS")]
    turn_ttl_secs: Option<u64>,
}

/// The `--config` file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    idle_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    max_message_size: Option<usize>,
    outbound_queue: Option<usize>,
    shutdown_grace_secs: Option<u64>,
    /// Full `RTCIceServer` entries: `[[ice_servers]] urls = [...]`, `username`, `credential`.
    ice_servers: Option<Vec<IceServer>>,
    turn_secret: Option<String>,
    turn_urls: Option<Vec<String>>,
    turn_ttl_secs: Option<u64>,
}

impl ServeArgs {
    /// Merges flags, environment, file and defaults into the listen address and settings.
    pub(crate) fn resolve(self) -> anyhow::Result<(SocketAddr, ServerConfig)> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let mut cfg = ServerConfig::default();
        let listen = self.listen.or(file.listen).unwrap_or(DEFAULT_LISTEN);
        if let Some(s) = self.idle_timeout_secs.or(file.idle_timeout_secs) {
            if s == 0 {
                bail!("idle_timeout_secs must be at least 1");
            }
            cfg.hub.idle_timeout = Duration::from_secs(s);
        }
        if let Some(n) = self.max_connections.or(file.max_connections) {
            cfg.hub.max_connections = n;
        }
        if let Some(n) = self.max_message_size.or(file.max_message_size) {
            if n < 1024 {
                bail!("max_message_size must be at least 1024 bytes");
            }
            cfg.max_message_size = n;
        }
        if let Some(n) = self.outbound_queue.or(file.outbound_queue) {
            if n == 0 {
                bail!("outbound_queue must be at least 1");
            }
            cfg.outbound_queue = n;
        }
        if let Some(s) = self.shutdown_grace_secs.or(file.shutdown_grace_secs) {
            cfg.shutdown_grace = Duration::from_secs(s);
        }
        if let Some(urls) = self.ice_servers {
            cfg.hub.ice.servers = ice_from_urls(urls, self.turn_username, self.turn_credential)?;
        } else if let Some(servers) = file.ice_servers {
            cfg.hub.ice.servers = servers;
        }
        let secret = self.turn_secret.or(file.turn_secret);
        let turn_urls = self.turn_urls.or(file.turn_urls);
        let ttl = self.turn_ttl_secs.or(file.turn_ttl_secs);
        match (secret, turn_urls) {
            (Some(secret), Some(urls)) => {
                if secret.is_empty() {
                    bail!("turn_secret must not be empty");
                }
                let urls: Vec<String> = urls.into_iter().map(|u| u.trim().to_owned()).collect();
                if urls.is_empty() || urls.iter().any(|u| !is_turn_url(u)) {
                    bail!("turn_urls must be turn: or turns: URLs");
                }
                let ttl = ttl.map_or(DEFAULT_TURN_TTL, Duration::from_secs);
                if ttl.is_zero() {
                    bail!("turn_ttl_secs must be at least 1");
                }
                cfg.hub.ice.turn = Some(TurnRest { secret, urls, ttl });
            }
            (Some(_), None) => bail!("turn_secret needs turn_urls (e.g. turn:{{host}}:3478)"),
            (None, Some(_)) => bail!("turn_urls need turn_secret"),
            (None, None) => {}
        }
        for s in &cfg.hub.ice.servers {
            for u in &s.urls {
                if !is_ice_url(u) {
                    bail!("ICE server URL {u:?} must start with stun:, turn: or turns:");
                }
            }
        }
        Ok((listen, cfg))
    }
}

fn ice_from_urls(
    urls: Vec<String>,
    username: Option<String>,
    credential: Option<String>,
) -> anyhow::Result<Vec<IceServer>> {
    let (turn, stun): (Vec<_>, Vec<_>) = urls
        .into_iter()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .partition(|u| is_turn_url(u));
    let mut out: Vec<IceServer> = stun.into_iter().map(IceServer::stun).collect();
    if !turn.is_empty() {
        if username.is_none() || credential.is_none() {
            bail!("turn: URLs need --turn-username and --turn-credential");
        }
        out.push(IceServer {
            urls: turn,
            username,
            credential,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(args: &[&str]) -> anyhow::Result<(SocketAddr, ServerConfig)> {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))?
            .args
            .resolve()
    }

    #[test]
    fn defaults_are_useful() {
        let (listen, cfg) = parse(&[]).unwrap();
        assert_eq!(listen, "0.0.0.0:5080".parse().unwrap());
        assert_eq!(cfg.hub.idle_timeout, Duration::from_secs(20));
        assert_eq!(cfg.hub.ice.servers.len(), 1);
        assert!(cfg.hub.ice.turn.is_none());
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
        assert!(parse(&["--turn-secret", "s"]).is_err());
        assert!(parse(&["--turn-urls", "turn:x:1"]).is_err());
        assert!(parse(&["--turn-secret", "s", "--turn-urls", "stun:x:1"]).is_err());
        assert!(parse(&["--ice-servers", "turn:b:2"]).is_err());
        assert!(parse(&["--ice-servers", "http://x"]).is_err());
        assert!(parse(&["--idle-timeout-secs", "0"]).is_err());
    }
}
