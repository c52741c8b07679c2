//! What every client command shares: the server URL (`https://` for TLS),
//! the namespace, the API key, and a channel that sends the namespace and
//! the key with each call.

use std::path::PathBuf;

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tributary_proto::NAMESPACE_METADATA_KEY;

use super::CliError;
use crate::security::Secret;

/// How long the plaintext-against-TLS probe waits for the server's first
/// bytes.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Clone, clap::Args)]
pub struct ClientOptions {
    /// The server's URL: http://HOST:PORT, or https://HOST:PORT for a server
    /// speaking TLS.
    #[arg(
        long,
        env = "TRIBUTARY_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// The namespace to work in.
    #[arg(long, env = "TRIBUTARY_NAMESPACE", default_value = tributary_proto::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The API key, sent as `authorization: Bearer <key>`; needed by servers
    /// with keys on.
    #[arg(long, env = "TRIBUTARY_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,
    /// CA certificates (PEM) to trust for an https:// server instead of the
    /// system's roots.
    #[arg(long, env = "TRIBUTARY_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for servers that require one (mutual TLS).
    #[arg(long, env = "TRIBUTARY_TLS_CLIENT_CERT", requires = "tls_client_key")]
    pub tls_client_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-client-cert.
    #[arg(long, env = "TRIBUTARY_TLS_CLIENT_KEY", requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
}

/// Adds the namespace and the API key to every call.
#[derive(Clone)]
pub struct NamespaceInterceptor {
    namespace: AsciiMetadataValue,
    authorization: Option<AsciiMetadataValue>,
}

impl Interceptor for NamespaceInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert(NAMESPACE_METADATA_KEY, self.namespace.clone());
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        Ok(request)
    }
}

pub type NamespacedChannel = InterceptedService<Channel, NamespaceInterceptor>;

fn read_pem(what: &str, path: &PathBuf) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|error| {
        CliError::Input(format!(
            "cannot read the {what} {}: {error}",
            path.display()
        ))
    })
}

impl ClientOptions {
    fn tls_config(&self) -> Result<Option<ClientTlsConfig>, CliError> {
        let https = self.server.starts_with("https://");
        if !https {
            if self.tls_ca.is_some() || self.tls_client_cert.is_some() {
                return Err(CliError::Input(format!(
                    "TLS options need an https:// server URL, not {:?}",
                    self.server
                )));
            }
            return Ok(None);
        }
        let mut tls = ClientTlsConfig::new();
        tls = match &self.tls_ca {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read_pem("CA certificate", ca)?)),
            None => tls.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.tls_client_cert, &self.tls_client_key) {
            tls = tls.identity(Identity::from_pem(
                read_pem("client certificate", cert)?,
                read_pem("client key", key)?,
            ));
        }
        Ok(Some(tls))
    }

    pub async fn channel(&self) -> Result<Channel, CliError> {
        let invalid_url = |source| CliError::InvalidUrl {
            url: self.server.clone(),
            source,
        };
        let mut endpoint = Endpoint::from_shared(self.server.clone()).map_err(invalid_url)?;
        if let Some(tls) = self.tls_config()? {
            endpoint = endpoint.tls_config(tls).map_err(invalid_url)?;
        }
        let channel = endpoint.connect().await.map_err(|source| {
            match tributary_proto::transport::scheme_mismatch(&self.server, &source) {
                Some(message) => CliError::Input(message),
                None => CliError::Connect {
                    url: self.server.clone(),
                    source,
                },
            }
        })?;
        // A TLS server accepts a plaintext HTTP/2 connection and only
        // closes it at the first call, which would fail without saying why.
        if self.server.starts_with("http://") {
            let url = self.server.clone();
            let expects_tls = tokio::task::spawn_blocking(move || {
                tributary_proto::transport::answers_with_tls(&url, PROBE_TIMEOUT)
            })
            .await
            .unwrap_or(false);
            if expects_tls {
                return Err(CliError::Input(
                    tributary_proto::transport::expects_tls_message(&self.server),
                ));
            }
        }
        Ok(channel)
    }

    pub async fn namespaced_channel(&self) -> Result<NamespacedChannel, CliError> {
        let namespace = AsciiMetadataValue::try_from(self.namespace.as_str())
            .map_err(|_| CliError::Input(format!("invalid namespace {:?}", self.namespace)))?;
        let authorization = self
            .api_key
            .as_ref()
            .map(|key| {
                AsciiMetadataValue::try_from(format!("Bearer {}", key.expose()))
                    .map_err(|_| CliError::Input("the API key is not ASCII text".to_owned()))
            })
            .transpose()?;
        Ok(InterceptedService::new(
            self.channel().await?,
            NamespaceInterceptor {
                namespace,
                authorization,
            },
        ))
    }
}
