//! The security boundary at the API edge: API keys bound to a namespace and
//! a role ([`keyring`]), which calls each role may make ([`access`]), the
//! tower layer that authenticates and authorizes every call before any
//! handler runs ([`layer`]), and the `KeyService` that manages keys
//! ([`service`]).
//!
//! Keys are on when the server was given a bootstrap admin key or its
//! database holds any key (revoked ones included, so that revoking the last
//! key never opens the server). Without keys, a server on loopback behaves
//! as if every caller were an admin of every namespace: the zero-configuration
//! local start.

pub mod access;
pub mod keyring;
pub mod layer;
pub mod service;

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

pub use keyring::{KeyRing, KeyRingError};
pub use layer::AuthLayer;

/// The namespace of keys that manage every namespace (the bootstrap key's).
pub const ALL_NAMESPACES: &str = "*";

/// What a key may do; see [`access`] for the calls of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, keys included.
    Admin,
    /// Register workflows; start, cancel and read runs.
    Client,
    /// Open the executor stream (`Connect`) and nothing else.
    Executor,
    /// Read and watch only: what a dashboard uses.
    Viewer,
}

impl Role {
    /// Every role, in the order documentation lists them.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Client, Role::Executor, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Client => "client",
            Role::Executor => "executor",
            Role::Viewer => "viewer",
        }
    }

    /// The role a name stands for, if any.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Who made a call: the key it carried, as the layer authenticated it. Put
/// into the request's extensions, so handlers that care (keys, streams) can
/// read it.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    /// The namespace the key acts in, or [`ALL_NAMESPACES`].
    pub namespace: String,
    pub role: Role,
    expires_at_ms: Option<i64>,
    /// Turns true when the key is revoked; `None` for keys that cannot be
    /// (the bootstrap key, the implicit local admin).
    revoked: Option<watch::Receiver<bool>>,
}

impl Principal {
    /// The caller of a server without keys: on loopback, everyone is an
    /// admin of every namespace.
    pub fn local_admin() -> Principal {
        Principal {
            key_id: "local".to_owned(),
            namespace: ALL_NAMESPACES.to_owned(),
            role: Role::Admin,
            expires_at_ms: None,
            revoked: None,
        }
    }

    /// Whether this key may manage keys of `namespace`.
    pub fn manages(&self, namespace: &str) -> bool {
        self.role == Role::Admin
            && (self.namespace == ALL_NAMESPACES || self.namespace == namespace)
    }

    /// Completes, with the reason, when the key stops working: revoked or
    /// expired. Pending forever for keys that do neither.
    pub fn ended(&self) -> impl Future<Output = &'static str> + Send + 'static {
        let revoked = self.revoked.clone();
        let expires_at_ms = self.expires_at_ms;
        async move {
            let revocation = async {
                if let Some(mut revoked) = revoked
                    && revoked.wait_for(|revoked| *revoked).await.is_ok()
                {
                    return "the API key was revoked";
                }
                std::future::pending().await
            };
            let expiry = async {
                let Some(expires_at_ms) = expires_at_ms else {
                    return std::future::pending().await;
                };
                let left = expires_at_ms.saturating_sub(crate::clock::now_unix_ms());
                tokio::time::sleep(Duration::from_millis(left.max(0) as u64)).await;
                "the API key expired"
            };
            tokio::select! {
                reason = revocation => reason,
                reason = expiry => reason,
            }
        }
    }
}
