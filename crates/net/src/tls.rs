//! The server's self-signed identity and the clients' trust in it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::default_provider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Why TLS material could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: not a PEM {what}: {detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// Generating the certificate failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The server's certificate and key, and the certificate's fingerprint.
#[derive(Debug)]
pub struct ServerIdentity {
    /// DER certificate.
    pub cert: CertificateDer<'static>,
    /// DER private key.
    pub key: PrivateKeyDer<'static>,
    /// Path of the PEM certificate clients pass with `--cert`.
    pub cert_path: PathBuf,
    /// Whether the certificate was created by this call.
    pub created: bool,
}

impl ServerIdentity {
    /// SHA-256 of the DER certificate, as colon-separated upper-case hex
    /// (the form browsers and `openssl x509 -fingerprint -sha256` print).
    pub fn fingerprint_sha256(&self) -> String {
        let digest = Sha256::digest(self.cert.as_ref());
        digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// A secret derived from the private key, stable across restarts: the
    /// key of QUIC stateless resets, so that after a restart the server can
    /// tell clients of the old process at once that their connection is gone
    /// (instead of them waiting for an idle timeout).
    pub(crate) fn reset_secret(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"polis stateless reset v1");
        hasher.update(self.key.secret_der());
        hasher.finalize().into()
    }

    /// rustls server configuration (TLS 1.3, Polis ALPN).
    pub(crate) fn server_crypto(&self) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())?;
        config.alpn_protocols = vec![polis_protocol::ALPN.to_vec()];
        Ok(config)
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Loads `tls/cert.pem` and `tls/key.pem` from the data directory, creating a
/// self-signed pair on first start valid for `names` (host names and IP
/// addresses, e.g. `localhost`, `127.0.0.1`).
pub fn load_or_create_identity(
    data_dir: &Path,
    names: &[String],
) -> Result<ServerIdentity, TlsError> {
    let dir = data_dir.join("tls");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    let mut created = false;
    if !cert_path.exists() || !key_path.exists() {
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
        write_private(&key_path, certified.signing_key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, certified.cert.pem()).map_err(io_error(&cert_path))?;
        created = true;
    }
    let cert = CertificateDer::from_pem_file(&cert_path).map_err(|err| TlsError::Pem {
        path: cert_path.clone(),
        what: "certificate",
        detail: err.to_string(),
    })?;
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|err| TlsError::Pem {
        path: key_path.clone(),
        what: "private key",
        detail: err.to_string(),
    })?;
    Ok(ServerIdentity {
        cert,
        key,
        cert_path,
        created,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))
}

/// The certificates of the PEM file at `path` (at least one).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |detail: String| TlsError::Pem {
        path: path.to_owned(),
        what: "certificate",
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| pem(err.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| pem(err.to_string()))?;
    if certs.is_empty() {
        return Err(pem("the file holds no certificate".into()));
    }
    Ok(certs)
}

/// rustls client configuration trusting exactly the certificate(s) in
/// `cert_path` (TLS 1.3, Polis ALPN). There is no option to skip verification.
pub fn client_crypto(cert_path: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certificates(cert_path)? {
        roots.add(cert)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![polis_protocol::ALPN.to_vec()];
    Ok(config)
}
