//! API keys in memory. Every key is read from the database once at start-up
//! and every change is made through this server, so authentication never
//! queries the database and a revocation reaches open streams at once.
//!
//! A secret is `trb_<key id>_<43 characters>`: the id finds the key, and the
//! SHA-256 of the random part is compared in constant time with the stored
//! one. The part is 256 random bits, so a plain hash cannot be reversed by
//! guessing.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tributary_core::is_valid_identifier;

use super::{ALL_NAMESPACES, Principal, Role};
use crate::store::{Store, StoreError, StoredApiKey};

/// The prefix of every secret this server makes.
pub const SECRET_PREFIX: &str = "trb_";

/// The shortest bootstrap key accepted: it is a password-like secret the
/// operator picks, so it must be long enough not to be guessed.
pub const MIN_BOOTSTRAP_KEY_CHARS: usize = 32;

/// The longest label a key may carry.
pub const MAX_LABEL_CHARS: usize = 200;

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// The call carried no usable key; the text says why, never the key.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("API key {0:?} not found")]
    NotFound(String),
    #[error("cannot generate a secret: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct KeyEntry {
    stored: StoredApiKey,
    revoked: watch::Sender<bool>,
}

/// The keys this server accepts.
pub struct KeyRing {
    store: Arc<dyn Store>,
    bootstrap_sha256: Option<[u8; 32]>,
    keys: RwLock<HashMap<String, KeyEntry>>,
}

/// What a new key's creator asks for.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub namespace: String,
    pub role: Role,
    pub label: String,
    pub expires_at_ms: Option<i64>,
}

impl KeyRing {
    /// Reads every stored key. `bootstrap` is the operator's admin key of
    /// every namespace, kept in memory only.
    pub async fn load(
        store: Arc<dyn Store>,
        bootstrap: Option<&str>,
    ) -> Result<KeyRing, KeyRingError> {
        let bootstrap_sha256 = match bootstrap {
            Some(key) if key.chars().count() < MIN_BOOTSTRAP_KEY_CHARS => {
                return Err(KeyRingError::InvalidArgument(format!(
                    "the bootstrap admin key is {} characters long; it must have at least {MIN_BOOTSTRAP_KEY_CHARS} (e.g. openssl rand -hex 32)",
                    key.chars().count()
                )));
            }
            Some(key) => Some(sha256(key.as_bytes())),
            None => None,
        };
        let keys = store
            .list_api_keys()
            .await?
            .into_iter()
            .map(|stored| {
                let revoked = watch::Sender::new(stored.revoked_at_ms.is_some());
                (stored.key_id.clone(), KeyEntry { stored, revoked })
            })
            .collect();
        Ok(KeyRing {
            store,
            bootstrap_sha256,
            keys: RwLock::new(keys),
        })
    }

    /// Whether calls need a key: a bootstrap key was given, or a key was
    /// ever created (a revoked one still counts, so revoking the last key
    /// does not open the server).
    pub fn enabled(&self) -> bool {
        self.bootstrap_sha256.is_some() || !self.read().is_empty()
    }

    /// Whether some key can be used now: the bootstrap key, or a stored key
    /// neither revoked nor expired.
    pub fn has_usable_key(&self, now_ms: i64) -> bool {
        self.bootstrap_sha256.is_some()
            || self
                .read()
                .values()
                .any(|entry| usable(&entry.stored, now_ms))
    }

    /// The principal a bearer secret stands for.
    pub fn authenticate(&self, secret: &str, now_ms: i64) -> Result<Principal, KeyRingError> {
        let unknown = || KeyRingError::Unauthenticated("unknown API key".to_owned());
        if let Some(rest) = secret.strip_prefix(SECRET_PREFIX)
            && let (Some(key_id), Some(random)) = (rest.get(..36), rest.get(36..))
            && let Some(random) = random.strip_prefix('_')
        {
            let keys = self.read();
            let entry = keys.get(key_id).ok_or_else(unknown)?;
            let presented = hex(&sha256(random.as_bytes()));
            if !constant_time_eq(presented.as_bytes(), entry.stored.secret_sha256.as_bytes()) {
                return Err(unknown());
            }
            let stored = &entry.stored;
            if stored.revoked_at_ms.is_some() {
                return Err(KeyRingError::Unauthenticated(format!(
                    "API key {key_id} was revoked"
                )));
            }
            if stored.expires_at_ms.is_some_and(|at| at <= now_ms) {
                return Err(KeyRingError::Unauthenticated(format!(
                    "API key {key_id} expired"
                )));
            }
            let role = Role::parse(&stored.role).ok_or_else(|| {
                KeyRingError::Store(StoreError::Corrupt(format!(
                    "API key {key_id} has an unknown role"
                )))
            })?;
            return Ok(Principal {
                key_id: stored.key_id.clone(),
                namespace: stored.namespace.clone(),
                role,
                expires_at_ms: stored.expires_at_ms,
                revoked: Some(entry.revoked.subscribe()),
            });
        }
        match self.bootstrap_sha256 {
            Some(expected) if constant_time_eq(&sha256(secret.as_bytes()), &expected) => {
                Ok(Principal {
                    key_id: "bootstrap".to_owned(),
                    namespace: ALL_NAMESPACES.to_owned(),
                    role: Role::Admin,
                    expires_at_ms: None,
                    revoked: None,
                })
            }
            _ => Err(unknown()),
        }
    }

    /// Creates a key for `creator` and returns it with its secret, which
    /// exists nowhere else from then on.
    pub async fn create(
        &self,
        creator: &Principal,
        new: NewKey,
        now_ms: i64,
    ) -> Result<(StoredApiKey, String), KeyRingError> {
        let namespace_ok = is_valid_identifier(&new.namespace)
            || (new.namespace == ALL_NAMESPACES && new.role == Role::Admin);
        if !namespace_ok {
            return Err(KeyRingError::InvalidArgument(format!(
                "invalid namespace {:?}: must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter (or * for an admin key of every namespace)",
                crate::api::text::truncate_at_char(new.namespace.clone(), 80)
            )));
        }
        if !creator.manages(&new.namespace) {
            return Err(KeyRingError::PermissionDenied(format!(
                "this key manages the keys of namespace {:?} only",
                creator.namespace
            )));
        }
        if new.label.chars().count() > MAX_LABEL_CHARS || new.label.contains('\0') {
            return Err(KeyRingError::InvalidArgument(format!(
                "the label must be at most {MAX_LABEL_CHARS} characters, without U+0000"
            )));
        }
        if new.expires_at_ms.is_some_and(|at| at <= now_ms) {
            return Err(KeyRingError::InvalidArgument(
                "expires_at is not in the future".to_owned(),
            ));
        }
        let key_id = uuid::Uuid::now_v7().hyphenated().to_string();
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|error| KeyRingError::Random(error.to_string()))?;
        let random = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
        let stored = StoredApiKey {
            key_id: key_id.clone(),
            namespace: new.namespace,
            role: new.role.as_str().to_owned(),
            label: new.label,
            secret_sha256: hex(&sha256(random.as_bytes())),
            created_at_ms: now_ms,
            expires_at_ms: new.expires_at_ms,
            revoked_at_ms: None,
        };
        self.store.insert_api_key(&stored).await?;
        self.write().insert(
            key_id.clone(),
            KeyEntry {
                stored: stored.clone(),
                revoked: watch::Sender::new(false),
            },
        );
        Ok((stored, format!("{SECRET_PREFIX}{key_id}_{random}")))
    }

    /// The keys `viewer` manages, of `namespace` only when given, newest
    /// first.
    pub fn list(&self, viewer: &Principal, namespace: Option<&str>) -> Vec<StoredApiKey> {
        let mut keys: Vec<StoredApiKey> = self
            .read()
            .values()
            .map(|entry| entry.stored.clone())
            .filter(|key| viewer.manages(&key.namespace))
            .filter(|key| namespace.is_none_or(|namespace| key.namespace == namespace))
            .collect();
        // Ids are UUIDv7, so their order is the order of creation.
        keys.sort_by(|a, b| b.key_id.cmp(&a.key_id));
        keys
    }

    /// Revokes a key `revoker` manages; its calls fail from now on and the
    /// streams open with it end.
    pub async fn revoke(
        &self,
        revoker: &Principal,
        key_id: &str,
        now_ms: i64,
    ) -> Result<StoredApiKey, KeyRingError> {
        let managed = self
            .read()
            .get(key_id)
            .is_some_and(|entry| revoker.manages(&entry.stored.namespace));
        if !managed {
            // Keys of other namespaces are as absent as unknown ones.
            return Err(KeyRingError::NotFound(crate::api::text::truncate_at_char(
                key_id.to_owned(),
                80,
            )));
        }
        self.store.revoke_api_key(key_id, now_ms).await?;
        let mut keys = self.write();
        let entry = keys
            .get_mut(key_id)
            .ok_or_else(|| KeyRingError::NotFound(key_id.to_owned()))?;
        entry.stored.revoked_at_ms.get_or_insert(now_ms);
        entry.revoked.send_replace(true);
        Ok(entry.stored.clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, KeyEntry>> {
        // A panic while holding the lock cannot leave a half-made entry (each
        // change is one insert or two field writes), so a poisoned lock is
        // still consistent.
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, KeyEntry>> {
        self.keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn usable(key: &StoredApiKey, now_ms: i64) -> bool {
    key.revoked_at_ms.is_none() && key.expires_at_ms.is_none_or(|at| at > now_ms)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Compares without stopping at the first difference, so the time taken
/// says nothing about how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
