//! `tributary.v1.KeyService`: create, list and revoke API keys. The layer
//! lets only admin keys through; which namespaces an admin manages is
//! checked by the key ring.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tributary_proto::v1 as pb;
use tributary_proto::v1::key_service_server::KeyService;
use tributary_proto::{timestamp_from_unix_ms, unix_ms_from_timestamp};

use super::keyring::NewKey;
use super::{KeyRing, Principal, Role};
use crate::api::ApiError;
use crate::clock::now_unix_ms;
use crate::store::StoredApiKey;

pub struct KeyApi {
    keys: Arc<KeyRing>,
}

impl KeyApi {
    pub fn new(keys: Arc<KeyRing>) -> KeyApi {
        KeyApi { keys }
    }
}

/// The caller; without keys on, everyone is the local admin.
fn caller<T>(request: &Request<T>) -> Principal {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or_else(Principal::local_admin)
}

fn key_info(key: StoredApiKey) -> pb::KeyInfo {
    pb::KeyInfo {
        key_id: key.key_id,
        namespace: key.namespace,
        role: key.role,
        label: key.label,
        created_at: Some(timestamp_from_unix_ms(key.created_at_ms)),
        expires_at: key.expires_at_ms.map(timestamp_from_unix_ms),
        revoked_at: key.revoked_at_ms.map(timestamp_from_unix_ms),
    }
}

#[tonic::async_trait]
impl KeyService for KeyApi {
    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreateKeyResponse>, Status> {
        let creator = caller(&request);
        let message = request.into_inner();
        let role = Role::parse(&message.role).ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "unknown role {:?}: expected admin, client, executor or viewer",
                crate::api::text::truncate_at_char(message.role.clone(), 40)
            ))
        })?;
        let new = NewKey {
            namespace: message.namespace,
            role,
            label: message.label,
            expires_at_ms: message.expires_at.as_ref().map(unix_ms_from_timestamp),
        };
        let (key, secret) = self
            .keys
            .create(&creator, new, now_unix_ms())
            .await
            .map_err(ApiError::from)?;
        tracing::info!(
            key_id = key.key_id,
            namespace = key.namespace,
            role = key.role,
            created_by = creator.key_id,
            "API key created"
        );
        Ok(Response::new(pb::CreateKeyResponse {
            key: Some(key_info(key)),
            secret,
        }))
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let viewer = caller(&request);
        let namespace = request.into_inner().namespace;
        let namespace = (!namespace.is_empty()).then_some(namespace.as_str());
        let keys = self.keys.list(&viewer, namespace);
        Ok(Response::new(pb::ListKeysResponse {
            keys: keys.into_iter().map(key_info).collect(),
        }))
    }

    async fn revoke_key(
        &self,
        request: Request<pb::RevokeKeyRequest>,
    ) -> Result<Response<pb::RevokeKeyResponse>, Status> {
        let revoker = caller(&request);
        let key_id = request.into_inner().key_id;
        let key = self
            .keys
            .revoke(&revoker, &key_id, now_unix_ms())
            .await
            .map_err(ApiError::from)?;
        tracing::info!(
            key_id = key.key_id,
            revoked_by = revoker.key_id,
            "API key revoked"
        );
        Ok(Response::new(pb::RevokeKeyResponse {
            key: Some(key_info(key)),
        }))
    }
}
