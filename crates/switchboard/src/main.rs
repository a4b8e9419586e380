//! The `switchboard` command: `switchboard serve` (the default) runs the signaling server.
//!
//! Configuration comes from flags, `SWITCHBOARD_*` environment variables and an optional
//! TOML file (`--config`), in that order of precedence, over documented defaults. See
//! `switchboard serve --help` and the README's configuration reference.

mod config;

use std::io::IsTerminal;
use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::ServeArgs;

/// Switchboard: self-hosted WebRTC peer-to-peer signaling.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no command, `serve` runs with these settings.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the signaling server (the default when no command is given).
    Serve(ServeArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (listen, config) = args.resolve()?;
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    announce(local);
    switchboard_server::run(config, listener, shutdown)
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

fn announce(local: SocketAddr) {
    let shown = if local.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), local.port())
    } else {
        local
    };
    tracing::info!(
        "switchboard {} listening on {local} — open http://{shown}/ ; Ant Media WebSocket: ws://{shown}/<app>/websocket (e.g. ws://{shown}/WebRTCAppEE/websocket) ; health: http://{shown}/healthz",
        env!("CARGO_PKG_VERSION"),
    );
}

/// Registers SIGINT and SIGTERM handlers now (so a signal that arrives right after startup
/// is not lost) and returns a future that resolves on the first of them.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("received SIGTERM"),
            _ = int.recv() => tracing::info!("received SIGINT"),
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("received Ctrl-C");
        }
    })
}
