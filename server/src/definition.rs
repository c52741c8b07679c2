//! Workflow definitions: the unvalidated form a client sends
//! ([`WorkflowDefinitionInput`]) and the normalized form the server stores and
//! runs ([`WorkflowSpec`]), with the version hash computed from the latter.
//!
//! Knows nothing of protobuf or SQL: the API edge converts wire messages into
//! [`WorkflowDefinitionInput`], and [`crate::dag::validate`] turns that into a
//! [`WorkflowSpec`] or a [`crate::dag::DefinitionError`].

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A workflow definition as a client wrote it: optional fields unset, strings
/// not yet checked. Also the format of definition files (JSON or YAML) read by
/// the CLI and of the shared test vectors, so unknown fields are rejected
/// rather than silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDefinitionInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tasks: Vec<TaskDefinitionInput>,
}

/// One task as a client wrote it. Numbers are signed so that a negative value
/// reaches validation and gets a message naming the task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDefinitionInput {
    pub id: String,
    #[serde(default)]
    pub dependencies: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_attempts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub retry_backoff: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_max_delay_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_jitter: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trigger_rule: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub handler: String,
}

/// A validated, normalized workflow definition: defaults filled in, tasks
/// sorted by id, dependencies sorted. Its JSON serialization is what the
/// version hash covers, so field order and names here are part of the
/// version's meaning: change them only together with a note that versions
/// change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowSpec {
    pub name: String,
    pub description: String,
    pub tasks: Vec<TaskSpec>,
}

/// A validated task with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub id: String,
    pub dependencies: Vec<String>,
    pub retry: RetryPolicy,
    /// `None` means the server-wide default, which is configuration and so
    /// deliberately not part of the version.
    pub timeout_ms: Option<u64>,
    pub trigger_rule: TriggerRule,
    pub handler: String,
}

/// How often and how late a failed task is attempted again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt (total attempts = 1 + this).
    pub attempts: u32,
    pub delay_ms: u64,
    pub backoff: Backoff,
    pub max_delay_ms: u64,
    pub jitter: bool,
}

/// Growth of the retry delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    Fixed,
    Linear,
    Exponential,
}

/// When a task runs, evaluated once all its dependencies are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    AllSuccess,
    AllDone,
    OneSuccess,
    OneFailed,
    NoneFailed,
}

impl Backoff {
    pub const ALL: [Backoff; 3] = [Backoff::Fixed, Backoff::Linear, Backoff::Exponential];

    pub fn as_str(self) -> &'static str {
        match self {
            Backoff::Fixed => "fixed",
            Backoff::Linear => "linear",
            Backoff::Exponential => "exponential",
        }
    }

    pub fn parse(text: &str) -> Option<Backoff> {
        Backoff::ALL
            .into_iter()
            .find(|backoff| backoff.as_str() == text)
    }
}

impl TriggerRule {
    pub const ALL: [TriggerRule; 5] = [
        TriggerRule::AllSuccess,
        TriggerRule::AllDone,
        TriggerRule::OneSuccess,
        TriggerRule::OneFailed,
        TriggerRule::NoneFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerRule::AllSuccess => "all_success",
            TriggerRule::AllDone => "all_done",
            TriggerRule::OneSuccess => "one_success",
            TriggerRule::OneFailed => "one_failed",
            TriggerRule::NoneFailed => "none_failed",
        }
    }

    pub fn parse(text: &str) -> Option<TriggerRule> {
        TriggerRule::ALL
            .into_iter()
            .find(|rule| rule.as_str() == text)
    }
}

/// Defaults of the retry settings (DESIGN.md).
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 0;
pub const DEFAULT_RETRY_DELAY_MS: u64 = 1_000;
pub const DEFAULT_RETRY_MAX_DELAY_MS: u64 = 30_000;
pub const DEFAULT_RETRY_JITTER: bool = true;

impl WorkflowSpec {
    /// The version: the first 16 hex digits of the SHA-256 of the canonical
    /// JSON encoding. Sixty-four bits make an accidental collision between
    /// versions of one workflow negligible while staying short enough to type.
    pub fn version(&self) -> String {
        let digest = Sha256::digest(self.canonical_json().as_bytes());
        digest[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// The canonical JSON text: the stored form and the input of the hash.
    pub fn canonical_json(&self) -> String {
        // Serializing plain structs of strings, numbers and enums cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads back a stored canonical JSON text.
    pub fn from_canonical_json(text: &str) -> Result<WorkflowSpec, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn task(&self, task_id: &str) -> Option<&TaskSpec> {
        self.tasks
            .binary_search_by(|task| task.id.as_str().cmp(task_id))
            .ok()
            .map(|index| &self.tasks[index])
    }
}

impl From<&WorkflowSpec> for WorkflowDefinitionInput {
    /// The fully explicit input form of a normalized spec: validating it gives
    /// the same spec back.
    fn from(spec: &WorkflowSpec) -> Self {
        WorkflowDefinitionInput {
            name: spec.name.clone(),
            description: spec.description.clone(),
            tasks: spec
                .tasks
                .iter()
                .map(|task| TaskDefinitionInput {
                    id: task.id.clone(),
                    dependencies: task.dependencies.clone(),
                    retry_attempts: Some(i64::from(task.retry.attempts)),
                    retry_delay_ms: i64::try_from(task.retry.delay_ms).ok(),
                    retry_backoff: task.retry.backoff.as_str().to_owned(),
                    retry_max_delay_ms: i64::try_from(task.retry.max_delay_ms).ok(),
                    retry_jitter: Some(task.retry.jitter),
                    timeout_ms: task.timeout_ms.and_then(|ms| i64::try_from(ms).ok()),
                    trigger_rule: task.trigger_rule.as_str().to_owned(),
                    handler: task.handler.clone(),
                })
                .collect(),
        }
    }
}
