//! What every client command shares: the server URL (`https://` for TLS),
//! the namespace, the API key, and one channel per command that sends the
//! namespace and the key with each call.
//!
//! The URL is checked before anything is sent, and a connection that fails
//! says why: no scheme, the wrong scheme for the server (TLS or not),
//! nothing listening, a host that cannot be resolved or reached, or no
//! answer in time, each in its own words.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tributary_proto::NAMESPACE_METADATA_KEY;
use tributary_proto::v1::run_service_client::RunServiceClient;

use super::CliError;
use crate::security::Secret;

/// How long the plaintext-against-TLS probe waits for the server's first
/// bytes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The server a client command talks to when neither `--server` nor
/// `TRIBUTARY_SERVER` says, and `TRIBUTARY_LISTEN` is not set either.
const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// How long connecting may take before the command gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, clap::Args)]
pub struct ClientOptions {
    /// The server's URL: http://HOST:PORT, or https://HOST:PORT for a server
    /// speaking TLS [default: http://127.0.0.1:50051, or the address
    /// TRIBUTARY_LISTEN names when it is set, 0.0.0.0 read as 127.0.0.1].
    #[arg(long, env = "TRIBUTARY_SERVER", value_name = "URL")]
    pub server: Option<String>,
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
    /// The URL to connect to: `--server`, else the server of this
    /// machine's `TRIBUTARY_LISTEN` (so that `tributary health` inside the
    /// container asks the address the server listens on), else the default.
    pub fn server_url(&self) -> String {
        match &self.server {
            Some(url) => url.clone(),
            None => std::env::var("TRIBUTARY_LISTEN")
                .ok()
                .and_then(|listen| {
                    // The server of this machine's configuration speaks TLS
                    // when it has a certificate.
                    let tls =
                        std::env::var_os("TRIBUTARY_TLS_CERT").is_some_and(|cert| !cert.is_empty());
                    url_for_listen_address(&listen, tls)
                })
                .unwrap_or_else(|| DEFAULT_SERVER.to_owned()),
        }
    }

    fn tls_config(&self, url: &str) -> Result<Option<ClientTlsConfig>, CliError> {
        let https = url.starts_with("https://");
        if !https {
            if self.tls_ca.is_some() || self.tls_client_cert.is_some() {
                return Err(CliError::Input(format!(
                    "TLS options need an https:// server URL, not {:?}",
                    shorten(url)
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

    /// One connection to the server, made now, so that an unreachable
    /// server (or one speaking the other scheme) is reported before
    /// anything else happens.
    pub async fn channel(&self) -> Result<Channel, CliError> {
        let url = self.server_url();
        let mut endpoint = endpoint(&url)?;
        if let Some(tls) = self.tls_config(&url)? {
            endpoint = endpoint.tls_config(tls).map_err(|error| {
                CliError::ServerUrl(format!(
                    "cannot use TLS with --server {:?}: {}",
                    shorten(&url),
                    error_chain(&error)
                ))
            })?;
        }
        let channel = endpoint.connect().await.map_err(|source| {
            match tributary_proto::transport::scheme_mismatch(&url, &source) {
                Some(message) => CliError::Input(message),
                None => connect_error(&url, &source),
            }
        })?;
        // A TLS server accepts a plaintext HTTP/2 connection and only
        // closes it at the first call, which would fail without saying why.
        if url.starts_with("http://") {
            let probed = url.clone();
            let expects_tls = tokio::task::spawn_blocking(move || {
                tributary_proto::transport::answers_with_tls(&probed, PROBE_TIMEOUT)
            })
            .await
            .unwrap_or(false);
            if expects_tls {
                return Err(CliError::Input(
                    tributary_proto::transport::expects_tls_message(&url),
                ));
            }
        }
        Ok(channel)
    }

    /// [`ClientOptions::channel`], sending the namespace with every call.
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

    /// A `RunService` client that takes answers as large as the server
    /// sends: a run with its context may be up to the server's message
    /// limit (16 MiB by default), beyond gRPC's usual 4 MiB.
    pub async fn run_client(&self) -> Result<RunServiceClient<NamespacedChannel>, CliError> {
        Ok(run_client_on(self.namespaced_channel().await?))
    }
}

/// [`ClientOptions::run_client`] on a channel already open.
pub fn run_client_on(channel: NamespacedChannel) -> RunServiceClient<NamespacedChannel> {
    RunServiceClient::new(channel).max_decoding_message_size(usize::MAX)
}

/// `http://HOST:PORT` (`https://` with `tls`) for a server listening on
/// `listen`; the unspecified addresses (`0.0.0.0`, `::`) are reached on
/// loopback, as `localhost` with TLS because certificates name hosts.
pub fn url_for_listen_address(listen: &str, tls: bool) -> Option<String> {
    let address: SocketAddr = listen.trim().parse().ok()?;
    if tls {
        let host = if address.ip().is_unspecified() || address.ip().is_loopback() {
            "localhost".to_owned()
        } else {
            match address.ip() {
                IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            }
        };
        return Some(format!("https://{host}:{}", address.port()));
    }
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Some(format!("http://{}", SocketAddr::new(ip, address.port())))
}

/// The endpoint for `url`, refusing what cannot be a server URL before any
/// connection is tried.
fn endpoint(url: &str) -> Result<Endpoint, CliError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(CliError::ServerUrl(format!(
            "--server must start with http:// or https://: got {:?}",
            shorten(url)
        )));
    }
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|error| {
        CliError::ServerUrl(format!(
            "--server {:?} is not a valid URL: {}",
            shorten(url),
            error_chain(&error)
        ))
    })?;
    Ok(endpoint.connect_timeout(CONNECT_TIMEOUT))
}

/// What went wrong connecting to `url`, said in words that point at the
/// fix.
fn connect_error(url: &str, error: &tonic::transport::Error) -> CliError {
    let chain = error_chain(error);
    let mut io_kind = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        source = cause.source();
    }
    use std::io::ErrorKind;
    let message = match io_kind {
        Some(ErrorKind::ConnectionRefused) => format!(
            "nothing is listening at {url} (connection refused): start the server \
             with `tributary serve`, or point --server at it"
        ),
        Some(ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable) => {
            format!("{url} is unreachable from here: {chain}")
        }
        Some(ErrorKind::TimedOut) => {
            format!("no answer from {url} within {CONNECT_TIMEOUT:?}: {chain}")
        }
        _ if chain.contains("dns error") || chain.contains("failed to lookup address") => {
            format!("cannot resolve the host of {url}: {chain}")
        }
        _ if chain.contains("timed out") => {
            format!("no answer from {url} within {CONNECT_TIMEOUT:?}")
        }
        _ => format!("cannot reach the server at {url}: {chain}"),
    };
    CliError::Unreachable(message)
}

/// An error and its causes on one line, each said once: tonic's
/// `transport error` alone does not say that the connection was refused.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// At most 200 characters of something the user typed, for an error
/// message.
fn shorten(text: &str) -> String {
    const LIMIT: usize = 200;
    match text.char_indices().nth(LIMIT) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_become_urls_reachable_from_this_machine() {
        assert_eq!(
            url_for_listen_address("0.0.0.0:50051", false).as_deref(),
            Some("http://127.0.0.1:50051")
        );
        assert_eq!(
            url_for_listen_address("0.0.0.0:50051", true).as_deref(),
            Some("https://localhost:50051")
        );
        assert_eq!(
            url_for_listen_address("[::]:9000", false).as_deref(),
            Some("http://[::1]:9000")
        );
        assert_eq!(
            url_for_listen_address("10.0.0.7:7000", false).as_deref(),
            Some("http://10.0.0.7:7000")
        );
        assert_eq!(url_for_listen_address("not an address", false), None);
    }

    #[test]
    fn a_url_without_scheme_is_refused_before_connecting() {
        let error = endpoint("127.0.0.1:50051").expect_err("no scheme");
        assert_eq!(
            error.to_string(),
            "--server must start with http:// or https://: got \"127.0.0.1:50051\""
        );
        assert!(endpoint("http://127.0.0.1:50051").is_ok());
    }
}
