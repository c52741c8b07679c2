//! Starting a run from a request, the one path `StartRun` and the
//! scheduler's fires share: the idempotency key is looked up first (the same
//! key with the same request finds the run it started, with another request
//! it is refused), then the workflow version is resolved and the coordinator
//! starts the run, which records the key with it.

use sha2::{Digest, Sha256};
use tributary_core::{ConcurrencySpec, RunKeyError};

use super::{CoordinatorHandle, DispatchError, StartRunCommand, StartedRun};
use crate::store::{Store, VersionSelector};

/// What to start, already checked by the caller (sizes, JSON, key length).
pub struct RunRequest<'a> {
    pub namespace: &'a str,
    pub workflow_name: &'a str,
    /// Empty for the latest version at the time of the call.
    pub workflow_version: &'a str,
    pub input_context_json: String,
    pub idempotency_key: Option<String>,
}

/// Starts the run, or finds the one an earlier request with the same
/// idempotency key and the same content started (`created: false`).
pub async fn start_or_find_run(
    store: &dyn Store,
    coordinator: &CoordinatorHandle,
    request: RunRequest<'_>,
) -> Result<StartedRun, DispatchError> {
    let request_hash = request_hash(
        request.workflow_name,
        request.workflow_version,
        &request.input_context_json,
    );
    if let Some(key) = &request.idempotency_key
        && let Some(existing) = store
            .find_run_by_idempotency_key(request.namespace, key)
            .await?
    {
        return if existing.request_hash == request_hash {
            Ok(StartedRun {
                run_id: existing.id,
                workflow_version: existing.workflow_version,
                created: false,
            })
        } else {
            Err(DispatchError::IdempotencyKeyReused {
                key: key.clone(),
                run_id: existing.id,
            })
        };
    }
    let selector = if request.workflow_version.is_empty() {
        VersionSelector::Latest
    } else {
        VersionSelector::Version(request.workflow_version.to_owned())
    };
    let workflow = store
        .get_workflow(request.namespace, request.workflow_name, &selector)
        .await?;
    // Computed before anything is stored, so a start whose input has no key
    // leaves no run behind.
    let concurrency_key = match &workflow.spec.concurrency {
        Some(policy) => Some(run_key(policy, &request.input_context_json)?),
        None => None,
    };
    coordinator
        .start_run(StartRunCommand {
            namespace: request.namespace.to_owned(),
            workflow,
            input_context_json: request.input_context_json,
            idempotency_key: request.idempotency_key,
            request_hash,
            concurrency_key,
        })
        .await
}

/// The concurrency key of a run with this input. The caller has checked
/// that the input is a JSON object; text that does not parse has no value at
/// any pointer.
fn run_key(policy: &ConcurrencySpec, input_json: &str) -> Result<String, RunKeyError> {
    let input: serde_json::Value =
        serde_json::from_str(input_json).unwrap_or(serde_json::Value::Null);
    policy.run_key(&input)
}

/// Identifies a start request for idempotency: the same workflow, the same
/// requested version (empty meaning "latest") and the same input text.
fn request_hash(workflow_name: &str, workflow_version: &str, input: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [workflow_name, workflow_version, input] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_keys_come_from_the_input_text() {
        let pointer = tributary_core::ConcurrencyDefinition {
            key_pointer: "/customer".into(),
            ..Default::default()
        }
        .normalize()
        .unwrap();
        assert_eq!(
            run_key(&pointer, r#"{"customer": "acme"}"#),
            Ok("acme".into())
        );
        assert_eq!(
            run_key(&pointer, "{}"),
            Err(RunKeyError::Missing("/customer".into()))
        );
        assert_eq!(
            run_key(&pointer, "{}").unwrap_err().to_string(),
            "the input has no value at \"/customer\", the workflow's concurrency key_pointer"
        );
    }

    #[test]
    fn request_hash_separates_fields() {
        assert_ne!(request_hash("ab", "", "{}"), request_hash("a", "b", "{}"));
        assert_eq!(request_hash("w", "", "{}"), request_hash("w", "", "{}"));
        assert_ne!(request_hash("w", "", "{}"), request_hash("w", "", "{ }"));
    }
}
