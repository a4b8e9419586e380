//! TLS in the binary: HTTPS and WSS on the listening port, with a certificate that can be
//! replaced while the server runs.
//!
//! [`CertReloader`] holds the current certificate and key behind a lock and hands them to
//! every new TLS handshake (it is rustls's certificate resolver); [`CertReloader::reload`]
//! reads the files again and swaps them in. Connections already open keep the certificate
//! they started with; the next handshake gets the new one. A file that does not load (half
//! written by an ACME client, a key that does not match) is reported and the old certificate
//! stays. The binary reloads on SIGHUP and when a file's modification time changes.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate files and what was loaded from them.
#[derive(Debug)]
pub struct CertReloader {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification times of the two files when they were last loaded.
    loaded: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads a PEM certificate chain and its private key, and checks that they belong together.
fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> io::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(format!("reading {}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("parsing {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(invalid(format!("{}: no certificate found", cert.display())));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| invalid(format!("reading key {}: {e}", key.display())))?;
    CertifiedKey::from_der(chain, der, provider)
        .map_err(|e| invalid(format!("{} and {}: {e}", cert.display(), key.display())))
}

impl CertReloader {
    /// Loads `cert` (PEM chain, leaf first) and `key` (PEM private key).
    ///
    /// # Errors
    /// Unreadable files, no certificate, no key, or a key that does not match.
    pub fn load(cert: &Path, key: &Path) -> io::Result<Arc<Self>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamps = (mtime(cert), mtime(key));
        let first = read(cert, key, &provider)?;
        Ok(Arc::new(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
            current: RwLock::new(Arc::new(first)),
            loaded: Mutex::new(stamps),
        }))
    }

    /// Reads the files again and, if they load, uses them for new handshakes.
    ///
    /// # Errors
    /// The files do not load; the certificate in use stays.
    pub fn reload(&self) -> io::Result<()> {
        let stamps = (mtime(&self.cert), mtime(&self.key));
        let fresh = read(&self.cert, &self.key, &self.provider)?;
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(fresh);
        }
        if let Ok(mut loaded) = self.loaded.lock() {
            *loaded = stamps;
        }
        Ok(())
    }

    /// [`CertReloader::reload`] if either file changed since it was last loaded; whether it
    /// reloaded.
    ///
    /// # Errors
    /// As [`CertReloader::reload`] (the changed files do not load).
    pub fn reload_if_changed(&self) -> io::Result<bool> {
        let now = (mtime(&self.cert), mtime(&self.key));
        let same = self.loaded.lock().is_ok_and(|l| *l == now);
        if same {
            return Ok(false);
        }
        self.reload().map(|()| true)
    }

    /// The certificate file (for logs).
    #[must_use]
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// A TLS server configuration (TLS 1.2 and 1.3, no client certificates) whose
    /// certificate is always this reloader's current one.
    ///
    /// # Errors
    /// The crypto provider supports no safe protocol version (cannot happen with ring).
    pub fn server_config(self: &Arc<Self>) -> io::Result<Arc<rustls::ServerConfig>> {
        let config = rustls::ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c))
    }
}
