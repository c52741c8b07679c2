//! The server's TLS settings, read from PEM files (rustls through tonic).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::security::SecurityConfig;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the TLS {what} {path}: {source}")]
pub struct TlsFileError {
    what: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The server's TLS configuration, or `None` when it serves plaintext.
/// Certificates that do not parse are reported when the server binds them.
pub fn server_tls_config(config: &SecurityConfig) -> Result<Option<ServerTlsConfig>, TlsFileError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let identity = Identity::from_pem(read("certificate", cert)?, read("private key", key)?);
    let mut tls = ServerTlsConfig::new()
        .identity(identity)
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some(client_ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read("client CA", client_ca)?));
    }
    Ok(Some(tls))
}
