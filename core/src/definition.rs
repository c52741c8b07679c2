//! Workflow definitions: the unvalidated form a client writes
//! ([`WorkflowDefinition`]) and the normalized form the server stores and
//! runs ([`WorkflowSpec`]), with the version hash computed from the latter.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::concurrency::{ConcurrencyDefinition, ConcurrencySpec};
use crate::labels::Labels;
use crate::map::MapSpec;

/// A workflow definition as a client writes it: optional fields unset,
/// strings not yet checked. Field names follow
/// `tributary.v1.WorkflowDefinition`. Also the format of definition files
/// (JSON or YAML) and of the shared test vectors, so unknown fields are
/// rejected rather than silently ignored.
///
/// ```
/// let definition: tributary_core::WorkflowDefinition = serde_json::from_str(
///     r#"{"name": "w", "tasks": [{"id": "a"}, {"id": "b", "dependencies": ["a"]}]}"#,
/// ).unwrap();
/// definition.validate().unwrap();
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDefinition {
    /// The workflow's name.
    pub name: String,
    /// Free text for people.
    #[serde(default)]
    pub description: String,
    /// The tasks.
    #[serde(default)]
    pub tasks: Vec<TaskDefinition>,
    /// How many runs may be active at once per concurrency key; `None`
    /// means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencyDefinition>,
}

/// The definition of one task as a client writes it. Field names follow
/// `tributary.v1.TaskDefinition`; unset numeric settings take the defaults,
/// empty strings mean the default backoff (`exponential`), trigger rule
/// (`all_success`) and handler (`<workflow>.<task id>`). Numbers are signed
/// so that a negative value reaches validation and gets a message naming the
/// task.
///
/// ```
/// let definition = tributary_core::TaskDefinition {
///     id: "load".into(),
///     dependencies: vec!["extract".into()],
///     retry_attempts: Some(2),
///     ..Default::default()
/// };
/// assert_eq!(definition.handler_name("etl"), "etl.load");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDefinition {
    /// The task's id, unique in its workflow.
    pub id: String,
    /// Ids of the tasks it waits for.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// Retries after the first attempt (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_attempts: Option<i64>,
    /// Base retry delay in milliseconds (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay_ms: Option<i64>,
    /// `fixed`, `linear` or `exponential`; empty means `exponential`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub retry_backoff: String,
    /// Upper bound of a retry delay in milliseconds (default 30000, or the
    /// base delay when that is larger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_max_delay_ms: Option<i64>,
    /// Whether retry delays are jittered (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_jitter: Option<bool>,
    /// Time limit of one attempt in milliseconds; unset means the server's
    /// default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<i64>,
    /// `all_success`, `all_done`, `one_success`, `one_failed` or
    /// `none_failed`; empty means `all_success`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trigger_rule: String,
    /// The routing key; empty means `<workflow>.<task id>`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub handler: String,
    /// Labels an executor must have registered, each with the same value,
    /// to be assigned the task; empty means any executor of the handler.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub required_labels: Labels,
    /// At most this many attempts of the handler in flight across the
    /// namespace (1 to 10000); unset means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<i64>,
    /// The context key of the array the task maps over; empty means the
    /// task is not mapped.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub map_over: String,
    /// The key the gathered outputs of a mapped task are written to; empty
    /// means the task's id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub map_output: String,
    /// The most instances of a mapped task (default 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_max_instances: Option<i64>,
}

impl TaskDefinition {
    /// The handler name this task is routed by within `workflow`: its
    /// `handler`, or `<workflow>.<task id>` when that is empty.
    ///
    /// ```
    /// let definition = tributary_core::TaskDefinition { id: "a".into(), ..Default::default() };
    /// assert_eq!(definition.handler_name("etl"), "etl.a");
    /// ```
    pub fn handler_name(&self, workflow: &str) -> String {
        if self.handler.is_empty() {
            format!("{workflow}.{}", self.id)
        } else {
            self.handler.clone()
        }
    }
}

/// A validated, normalized workflow definition: defaults filled in, tasks
/// sorted by id, dependencies sorted. Its JSON serialization is what the
/// version hash covers, so field order and names here are part of the
/// version's meaning: change them only together with a note that versions
/// change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowSpec {
    /// The workflow's name.
    pub name: String,
    /// Free text for people.
    pub description: String,
    /// The tasks, sorted by id.
    pub tasks: Vec<TaskSpec>,
    /// The concurrency policy. Left out of the canonical JSON when absent,
    /// so that definitions without one keep the versions they had before
    /// concurrency policies existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencySpec>,
}

/// A validated task with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The task's id.
    pub id: String,
    /// Ids of the tasks it waits for, sorted.
    pub dependencies: Vec<String>,
    /// When and how often a failed attempt is retried.
    pub retry: RetryPolicy,
    /// `None` means the server-wide default, which is configuration and so
    /// deliberately not part of the version.
    pub timeout_ms: Option<u64>,
    /// When the task runs once its dependencies are terminal.
    pub trigger_rule: TriggerRule,
    /// The routing key, never empty.
    pub handler: String,
    /// Labels an executor must have to be assigned the task. Left out of
    /// the canonical JSON when empty, so that definitions without labels
    /// keep the versions they had before labels existed.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub required_labels: Labels,
    /// At most this many attempts of the handler in flight across the
    /// namespace. Left out of the canonical JSON when unset, so that
    /// definitions without it keep their versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// The array the task maps over, when it is mapped. Left out of the
    /// canonical JSON when absent, so that definitions without maps keep
    /// their versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<MapSpec>,
}

/// How often and how late a failed task is attempted again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt (total attempts = 1 + this).
    pub attempts: u32,
    /// Base delay before a retry.
    pub delay_ms: u64,
    /// How the delay grows from one retry to the next.
    pub backoff: Backoff,
    /// Upper bound of a delay.
    pub max_delay_ms: u64,
    /// Whether delays are jittered.
    pub jitter: bool,
}

/// Growth of the retry delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// The same delay every time.
    Fixed,
    /// The delay times the retry number.
    Linear,
    /// The delay doubled with each retry.
    Exponential,
}

/// When a task runs, evaluated once all its dependencies are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    /// Every dependency succeeded.
    AllSuccess,
    /// Every dependency finished, whatever the outcome.
    AllDone,
    /// At least one dependency succeeded.
    OneSuccess,
    /// At least one dependency failed (or was skipped because its own
    /// upstream failed).
    OneFailed,
    /// No dependency failed; one skipped because its own upstream failed
    /// counts as failed.
    NoneFailed,
}

impl Backoff {
    /// Every backoff, in the order of [`BACKOFFS`].
    pub const ALL: [Backoff; 3] = [Backoff::Fixed, Backoff::Linear, Backoff::Exponential];

    /// The name used in definitions.
    ///
    /// ```
    /// assert_eq!(tributary_core::Backoff::Linear.as_str(), "linear");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Backoff::Fixed => "fixed",
            Backoff::Linear => "linear",
            Backoff::Exponential => "exponential",
        }
    }

    /// The backoff called `text`, if any.
    ///
    /// ```
    /// use tributary_core::Backoff;
    /// assert_eq!(Backoff::parse("fixed"), Some(Backoff::Fixed));
    /// assert_eq!(Backoff::parse("Fixed"), None);
    /// ```
    pub fn parse(text: &str) -> Option<Backoff> {
        Backoff::ALL
            .into_iter()
            .find(|backoff| backoff.as_str() == text)
    }
}

impl TriggerRule {
    /// Every trigger rule, in the order of [`TRIGGER_RULES`].
    pub const ALL: [TriggerRule; 5] = [
        TriggerRule::AllSuccess,
        TriggerRule::AllDone,
        TriggerRule::OneSuccess,
        TriggerRule::OneFailed,
        TriggerRule::NoneFailed,
    ];

    /// The name used in definitions.
    ///
    /// ```
    /// assert_eq!(tributary_core::TriggerRule::AllDone.as_str(), "all_done");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            TriggerRule::AllSuccess => "all_success",
            TriggerRule::AllDone => "all_done",
            TriggerRule::OneSuccess => "one_success",
            TriggerRule::OneFailed => "one_failed",
            TriggerRule::NoneFailed => "none_failed",
        }
    }

    /// The trigger rule called `text`, if any.
    ///
    /// ```
    /// use tributary_core::TriggerRule;
    /// assert_eq!(TriggerRule::parse("one_failed"), Some(TriggerRule::OneFailed));
    /// ```
    pub fn parse(text: &str) -> Option<TriggerRule> {
        TriggerRule::ALL
            .into_iter()
            .find(|rule| rule.as_str() == text)
    }
}

/// The names of the retry backoffs.
///
/// ```
/// assert!(tributary_core::BACKOFFS.contains(&"linear"));
/// ```
pub const BACKOFFS: [&str; 3] = [
    Backoff::ALL[0].as_str(),
    Backoff::ALL[1].as_str(),
    Backoff::ALL[2].as_str(),
];

/// The names of the trigger rules.
///
/// ```
/// assert!(tributary_core::TRIGGER_RULES.contains(&"all_done"));
/// ```
pub const TRIGGER_RULES: [&str; 5] = [
    TriggerRule::ALL[0].as_str(),
    TriggerRule::ALL[1].as_str(),
    TriggerRule::ALL[2].as_str(),
    TriggerRule::ALL[3].as_str(),
    TriggerRule::ALL[4].as_str(),
];

/// Default of `retry_attempts`.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 0;
/// Default of `retry_delay_ms`.
pub const DEFAULT_RETRY_DELAY_MS: u64 = 1_000;
/// Default of `retry_max_delay_ms` when `retry_delay_ms` is not above it.
pub const DEFAULT_RETRY_MAX_DELAY_MS: u64 = 30_000;
/// Default of `retry_jitter`.
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

    /// The task with id `task_id`.
    pub fn task(&self, task_id: &str) -> Option<&TaskSpec> {
        self.tasks
            .binary_search_by(|task| task.id.as_str().cmp(task_id))
            .ok()
            .map(|index| &self.tasks[index])
    }
}

impl From<&WorkflowSpec> for WorkflowDefinition {
    /// The fully explicit definition of a normalized spec: validating it
    /// gives the same spec back.
    fn from(spec: &WorkflowSpec) -> Self {
        WorkflowDefinition {
            name: spec.name.clone(),
            description: spec.description.clone(),
            tasks: spec
                .tasks
                .iter()
                .map(|task| TaskDefinition {
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
                    required_labels: task.required_labels.clone(),
                    max_in_flight: task.max_in_flight.map(i64::from),
                    map_over: task
                        .map
                        .as_ref()
                        .map(|map| map.over.clone())
                        .unwrap_or_default(),
                    map_output: task
                        .map
                        .as_ref()
                        .map(|map| map.output.clone())
                        .unwrap_or_default(),
                    map_max_instances: task.map.as_ref().map(|map| i64::from(map.max_instances)),
                })
                .collect(),
            concurrency: spec.concurrency.as_ref().map(ConcurrencyDefinition::from),
        }
    }
}
