//! Helpers for the security tests: certificates made at test time (never
//! committed), calls carrying an API key, and a server with keys on.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tributary_proto::v1 as pb;
use tributary_proto::v1::key_service_client::KeyServiceClient;
use tributary_server::security::Secret;

use crate::TestServer;

/// The bootstrap admin key of [`start_with_keys`] servers.
pub const BOOTSTRAP_KEY: &str = "test-bootstrap-admin-key-0123456789abcdef";

/// Sends an API key and, when given, a namespace with every call.
#[derive(Clone)]
pub struct Bearer {
    authorization: Option<AsciiMetadataValue>,
    namespace: Option<AsciiMetadataValue>,
}

impl Bearer {
    /// `key` as `authorization: Bearer <key>`; no namespace metadata.
    pub fn new(key: Option<&str>) -> Bearer {
        Bearer {
            authorization: key.map(|key| {
                AsciiMetadataValue::try_from(format!("Bearer {key}")).expect("ASCII key")
            }),
            namespace: None,
        }
    }

    /// The raw `authorization` value, for malformed headers.
    pub fn raw(value: &str) -> Bearer {
        Bearer {
            authorization: Some(AsciiMetadataValue::try_from(value).expect("ASCII value")),
            namespace: None,
        }
    }

    /// Also names `namespace` in the metadata.
    pub fn in_namespace(mut self, namespace: &str) -> Bearer {
        self.namespace = Some(AsciiMetadataValue::try_from(namespace).expect("ASCII namespace"));
        self
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        if let Some(namespace) = &self.namespace {
            request
                .metadata_mut()
                .insert(tributary_proto::NAMESPACE_METADATA_KEY, namespace.clone());
        }
        Ok(request)
    }
}

pub type BearerChannel = InterceptedService<Channel, Bearer>;

/// A loopback server with the bootstrap key [`BOOTSTRAP_KEY`].
pub async fn start_with_keys() -> TestServer {
    TestServer::start_with(|config| {
        config.security.admin_key = Some(Secret::new(BOOTSTRAP_KEY));
    })
    .await
}

/// Creates a key with `admin_key` and returns its secret.
pub async fn create_key(channel: Channel, admin_key: &str, namespace: &str, role: &str) -> String {
    create_key_expiring(channel, admin_key, namespace, role, None).await
}

/// Creates a key that expires at `expires_at_ms` and returns its secret.
pub async fn create_key_expiring(
    channel: Channel,
    admin_key: &str,
    namespace: &str,
    role: &str,
    expires_at_ms: Option<i64>,
) -> String {
    KeyServiceClient::with_interceptor(channel, Bearer::new(Some(admin_key)))
        .create_key(pb::CreateKeyRequest {
            namespace: namespace.to_owned(),
            role: role.to_owned(),
            label: format!("{role} of {namespace}"),
            expires_at: expires_at_ms.map(tributary_proto::timestamp_from_unix_ms),
        })
        .await
        .unwrap_or_else(|status| panic!("creating a {role} key of {namespace}: {status}"))
        .into_inner()
        .secret
}

/// The key id inside a secret `trb_<id>_<random>`.
pub fn key_id_of(secret: &str) -> String {
    secret
        .strip_prefix("trb_")
        .and_then(|rest| rest.get(..36))
        .expect("a trb_ secret")
        .to_owned()
}

/// A CA, a server certificate for `localhost` and `127.0.0.1` signed by it,
/// a client certificate signed by it, and a client certificate signed by
/// another CA, as PEM files in a temporary directory.
pub struct TestCertificates {
    directory: tempfile::TempDir,
}

impl TestCertificates {
    pub fn generate() -> TestCertificates {
        let directory = tempfile::tempdir().expect("temporary directory");
        let write = |name: &str, text: &str| {
            std::fs::write(directory.path().join(name), text).expect("write PEM");
        };
        let ca = certificate_authority("Tributary test CA");
        write("ca.pem", &ca.pem());
        let server_key = KeyPair::generate().expect("key");
        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        server
            .distinguished_name
            .push(DnType::CommonName, "tributary");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = server
            .signed_by(&server_key, &*ca)
            .expect("server certificate");
        write("server.pem", &server.pem());
        write("server.key", &server_key.serialize_pem());
        let (client, client_key) = client_certificate(&ca, "executor");
        write("client.pem", &client);
        write("client.key", &client_key);
        let stranger_ca = certificate_authority("Someone else's CA");
        let (stranger, stranger_key) = client_certificate(&stranger_ca, "stranger");
        write("stranger.pem", &stranger);
        write("stranger.key", &stranger_key);
        TestCertificates { directory }
    }

    /// The path of one of the files: `ca.pem`, `server.pem`, `server.key`,
    /// `client.pem`, `client.key`, `stranger.pem`, `stranger.key`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    /// The text of one of the files.
    pub fn pem(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read PEM")
    }
}

fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

fn client_certificate(ca: &CertifiedIssuer<'static, KeyPair>, name: &str) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let certificate = params.signed_by(&key, &**ca).expect("client certificate");
    (certificate.pem(), key.serialize_pem())
}
