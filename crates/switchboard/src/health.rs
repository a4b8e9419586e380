//! `switchboard health`: asks a running server's `GET /healthz` and exits 0 when it answers
//! `200 {"status":"ok"}`, 1 otherwise (with the reason on stderr). Made for a container's
//! `HEALTHCHECK` and for scripts that wait for a server: it takes the same flags,
//! `SWITCHBOARD_*` environment and `--config` file as `serve`, so it asks the port and the
//! scheme (HTTPS with `tls_cert`) the server listens on, on this machine's loopback address.
//! No HTTP client library: one request, at most 4 KiB of answer, within `--timeout-secs`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::ServeArgs;

/// Most bytes of the answer read: `/healthz` answers in well under 300.
const MAX_ANSWER: usize = 4096;

/// Flags of `switchboard health`.
#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// Address to ask instead of the one the settings give, e.g. `127.0.0.1:5080`.
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5)]
    timeout_secs: u64,
    /// The server's settings (flags, environment, file), as `serve` takes them.
    #[command(flatten)]
    serve: ServeArgs,
}

/// Asks `/healthz`; `Ok` when the server answered that it is healthy.
pub(crate) async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let resolved = args.serve.resolve()?;
    let addr = args
        .addr
        .unwrap_or_else(|| reached_locally(resolved.listen));
    let tls = resolved.tls.is_some();
    let answer = tokio::time::timeout(Duration::from_secs(args.timeout_secs), ask(addr, tls))
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {addr} within {}s", args.timeout_secs))??;
    let head = answer.lines().next().unwrap_or_default();
    if !head.starts_with("HTTP/1.1 200") || !answer.contains(r#""status":"ok""#) {
        bail!("{addr} answered /healthz with `{head}`");
    }
    println!(
        "ok: {}://{addr}/healthz",
        if tls { "https" } else { "http" }
    );
    Ok(())
}

/// Where a server listening on `listen` is reached from this machine: its own address, or
/// IPv4 loopback when it listens on every address (`[::]` is dual-stack).
pub(crate) fn reached_locally(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
    } else {
        listen
    }
}

async fn ask(addr: SocketAddr, tls: bool) -> anyhow::Result<String> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    if !tls {
        return exchange(tcp, addr).await;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name = ServerName::IpAddress(addr.ip().into());
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS handshake with {addr}"))?;
    exchange(stream, addr).await
}

/// One `GET /healthz`, the answer (at most `MAX_ANSWER` bytes) as text.
async fn exchange(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    addr: SocketAddr,
) -> anyhow::Result<String> {
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::with_capacity(512);
    (&mut stream)
        .take(MAX_ANSWER as u64)
        .read_to_end(&mut answer)
        .await
        .with_context(|| format!("reading the answer of {addr}"))?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The health check talks to this machine's own server, which holds a certificate for its
/// public name, not for the loopback address asked: any certificate is taken, but its
/// handshake signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
