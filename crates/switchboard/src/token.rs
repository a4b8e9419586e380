//! `switchboard token`: mints a room token for development and scripts.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use switchboard_auth::{MintClaims, SigningAlgorithm, SigningKey, mint};

/// Flags of `switchboard token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// The room it admits to: a room name, or a prefix ending in `*` (`team-*`; `*` is
    /// every room) [default: every room].
    #[arg(long)]
    room: Option<String>,
    /// The holder's identity (`sub`): 1-128 characters of A-Z a-z 0-9 . _ @ + -.
    #[arg(long)]
    sub: Option<String>,
    /// The app it is good for (the `<app>` of `/<app>/websocket`) [default: any app].
    #[arg(long)]
    app: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// Not valid before this many seconds from now [default: valid at once].
    #[arg(long)]
    not_before: Option<u64>,
    /// Do not grant TURN credentials (STUN only).
    #[arg(long)]
    no_turn: bool,
    /// Do not grant making offers.
    #[arg(long)]
    no_offer: bool,
    /// Longest join, in seconds (1-86400).
    #[arg(long)]
    max_call: Option<u64>,
    /// HS256 secret: the server's --auth-secret.
    #[arg(long, env = "SWITCHBOARD_AUTH_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Sign with this PEM private key instead of a secret (see --alg).
    #[arg(long, conflicts_with = "secret")]
    private_key: Option<PathBuf>,
    /// Algorithm of --private-key: RS256, ES256, ES384 or EdDSA [default: RS256].
    #[arg(long, default_value = "RS256", requires = "private_key")]
    alg: String,
    /// Key id written in the token's header (to pick among rotated keys).
    #[arg(long)]
    kid: Option<String>,
    /// Base URL of the server, for the demo link printed after the token.
    #[arg(long, default_value = "http://localhost:5080")]
    url: String,
}

/// Prints the token, then a demo page URL that uses it.
pub(crate) fn run(args: TokenArgs) -> anyhow::Result<()> {
    let mut key = match (&args.secret, &args.private_key) {
        (Some(secret), None) => SigningKey::secret(secret.as_bytes()),
        (None, Some(path)) => {
            let alg = match args.alg.to_ascii_uppercase().as_str() {
                "RS256" => SigningAlgorithm::RS256,
                "ES256" => SigningAlgorithm::ES256,
                "ES384" => SigningAlgorithm::ES384,
                "EDDSA" => SigningAlgorithm::EdDSA,
                other => bail!("--alg {other}: expected RS256, ES256, ES384 or EdDSA"),
            };
            let pem = std::fs::read(path)
                .with_context(|| format!("reading private key {}", path.display()))?;
            SigningKey::private_pem(alg, &pem)
                .with_context(|| format!("private key {} for {alg:?}", path.display()))?
        }
        _ => {
            bail!("give the server's secret (--secret or SWITCHBOARD_AUTH_SECRET) or --private-key")
        }
    };
    if let Some(kid) = &args.kid {
        key = key.with_kid(kid);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = MintClaims {
        exp: now.saturating_add(args.ttl),
        nbf: args.not_before.map(|s| now.saturating_add(s)),
        sub: args.sub,
        app: args.app,
        room: args.room.clone(),
        turn: args.no_turn.then_some(false),
        offer: args.no_offer.then_some(false),
        max_call: args.max_call,
    };
    let token = mint(&key, &claims).context("signing the token")?;
    println!("{token}");
    // A room pattern is not a room: the link opens one room it allows.
    let room = match args.room.as_deref() {
        Some(r) => r
            .strip_suffix('*')
            .map_or_else(|| r.to_owned(), |p| format!("{p}1")),
        None => "demo".to_owned(),
    };
    println!(
        "{}/?room={room}&token={token}",
        args.url.trim_end_matches('/')
    );
    Ok(())
}
