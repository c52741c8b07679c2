//! What every client command shares: the server URL, the namespace, and a
//! channel that sends the namespace with each call.

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tributary_proto::NAMESPACE_METADATA_KEY;

use super::CliError;

#[derive(Debug, Clone, clap::Args)]
pub struct ClientOptions {
    /// The server's URL.
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
}

/// Adds the namespace metadata to every call.
#[derive(Clone)]
pub struct NamespaceInterceptor(AsciiMetadataValue);

impl Interceptor for NamespaceInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert(NAMESPACE_METADATA_KEY, self.0.clone());
        Ok(request)
    }
}

pub type NamespacedChannel = InterceptedService<Channel, NamespaceInterceptor>;

impl ClientOptions {
    pub async fn channel(&self) -> Result<Channel, CliError> {
        let endpoint =
            Endpoint::from_shared(self.server.clone()).map_err(|source| CliError::InvalidUrl {
                url: self.server.clone(),
                source,
            })?;
        endpoint
            .connect()
            .await
            .map_err(|source| CliError::Connect {
                url: self.server.clone(),
                source,
            })
    }

    pub async fn namespaced_channel(&self) -> Result<NamespacedChannel, CliError> {
        let namespace = AsciiMetadataValue::try_from(self.namespace.as_str())
            .map_err(|_| CliError::Input(format!("invalid namespace {:?}", self.namespace)))?;
        Ok(InterceptedService::new(
            self.channel().await?,
            NamespaceInterceptor(namespace),
        ))
    }
}
