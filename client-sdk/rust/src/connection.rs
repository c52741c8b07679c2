//! How the SDK reaches a server: `http://` or `https://` (TLS with the
//! system's roots or a given CA, and a client certificate for servers that
//! require one), and the API key sent with every call.

use std::time::Duration;

use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::Error;

/// How long the plaintext-against-TLS probe waits for the server's first
/// bytes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Connection settings for [`Client::connect_with`](crate::Client::connect_with)
/// and [`WorkerBuilder::connect_options`](crate::WorkerBuilder::connect_options).
///
/// ```
/// let options = tributary::ConnectOptions::new()
///     .api_key("trb_...")
///     .ca_certificate_pem(b"-----BEGIN CERTIFICATE-----...".to_vec());
/// ```
#[derive(Clone, Default)]
pub struct ConnectOptions {
    api_key: Option<String>,
    ca_pem: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ConnectOptions")
            .field("api_key", &self.api_key.as_ref().map(|_| ".."))
            .field("ca_pem", &self.ca_pem.is_some())
            .field("client_identity", &self.identity.is_some())
            .finish()
    }
}

impl ConnectOptions {
    /// No key; TLS with the system's roots for `https://` URLs.
    ///
    /// ```
    /// let options = tributary::ConnectOptions::new();
    /// ```
    pub fn new() -> ConnectOptions {
        ConnectOptions::default()
    }

    /// The API key, sent as `authorization: Bearer <key>` with every call
    /// and on the executor stream.
    ///
    /// ```
    /// let options = tributary::ConnectOptions::new().api_key("trb_...");
    /// ```
    pub fn api_key(mut self, key: impl Into<String>) -> ConnectOptions {
        self.api_key = Some(key.into());
        self
    }

    /// CA certificates (PEM) to trust instead of the system's roots.
    ///
    /// ```
    /// let options = tributary::ConnectOptions::new().ca_certificate_pem(Vec::new());
    /// ```
    pub fn ca_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> ConnectOptions {
        self.ca_pem = Some(pem.into());
        self
    }

    /// A client certificate and its private key (PEM), for servers that
    /// require one (mutual TLS).
    ///
    /// ```
    /// let options = tributary::ConnectOptions::new().client_identity_pem(Vec::new(), Vec::new());
    /// ```
    pub fn client_identity_pem(
        mut self,
        certificate: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> ConnectOptions {
        self.identity = Some((certificate.into(), key.into()));
        self
    }

    /// The `authorization` value, if a key was given.
    pub(crate) fn authorization(&self) -> Result<Option<AsciiMetadataValue>, Error> {
        self.api_key
            .as_ref()
            .map(|key| {
                AsciiMetadataValue::try_from(format!("Bearer {key}"))
                    .map_err(|_| Error::InvalidApiKey)
            })
            .transpose()
    }

    /// The endpoint of `url`, with TLS for `https://`.
    pub(crate) fn endpoint(&self, url: &str) -> Result<Endpoint, Error> {
        let invalid = |message: String| Error::InvalidUrl {
            url: url.to_owned(),
            message,
        };
        let endpoint =
            Endpoint::from_shared(url.to_owned()).map_err(|error| invalid(error.to_string()))?;
        if !url.starts_with("https://") {
            if self.ca_pem.is_some() || self.identity.is_some() {
                return Err(invalid("TLS settings need an https:// URL".to_owned()));
            }
            return Ok(endpoint);
        }
        let mut tls = ClientTlsConfig::new();
        tls = match &self.ca_pem {
            Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
            None => tls.with_native_roots(),
        };
        if let Some((certificate, key)) = &self.identity {
            tls = tls.identity(Identity::from_pem(certificate, key));
        }
        endpoint
            .tls_config(tls)
            .map_err(|error| invalid(error.to_string()))
    }
}

/// Connects, naming a scheme that does not match the server's.
pub(crate) async fn connect(endpoint: Endpoint, url: &str) -> Result<Channel, Error> {
    let channel =
        endpoint.connect().await.map_err(
            |error| match tributary_proto::transport::scheme_mismatch(url, &error) {
                Some(message) => Error::SchemeMismatch(message),
                None => Error::Transport(error),
            },
        )?;
    // A TLS server accepts a plaintext HTTP/2 connection and closes it at
    // the first call, which would then fail without saying why.
    if url.starts_with("http://") {
        let probed = url.to_owned();
        let expects_tls = tokio::task::spawn_blocking(move || {
            tributary_proto::transport::answers_with_tls(&probed, PROBE_TIMEOUT)
        })
        .await
        .unwrap_or(false);
        if expects_tls {
            return Err(Error::SchemeMismatch(
                tributary_proto::transport::expects_tls_message(url),
            ));
        }
    }
    Ok(channel)
}
