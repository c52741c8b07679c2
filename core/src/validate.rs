//! Validation of workflow definitions: identifiers, retry settings, trigger
//! rules, limits, and the DAG itself (petgraph). Every rejection names its
//! culprit, because the message is all a user sees of it.

use std::collections::{BTreeMap, BTreeSet};

use crate::concurrency::ConcurrencyError;
use crate::cycle::find_cycle;
use crate::definition::{
    Backoff, DEFAULT_RETRY_ATTEMPTS, DEFAULT_RETRY_DELAY_MS, DEFAULT_RETRY_JITTER,
    DEFAULT_RETRY_MAX_DELAY_MS, RetryPolicy, TaskDefinition, TaskSpec, TriggerRule,
    WorkflowDefinition, WorkflowSpec,
};
use crate::labels::{LabelError, check_labels};
use crate::map::{MapError, normalize_map};
use crate::shown::{shown, shown_cycle};

/// Upper bounds of a definition's size; configurable on the server, so only
/// the server checks them.
///
/// ```
/// let limits = tributary_core::DefinitionLimits::default();
/// assert!(limits.max_tasks >= 10_002);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefinitionLimits {
    /// The most tasks a workflow may have.
    pub max_tasks: usize,
    /// The most bytes a definition may take as received.
    pub max_definition_bytes: usize,
}

impl DefinitionLimits {
    /// No limit at all: what a client checks, leaving the limits to the
    /// server's configuration.
    pub const UNLIMITED: DefinitionLimits = DefinitionLimits {
        max_tasks: usize::MAX,
        max_definition_bytes: usize::MAX,
    };
}

impl Default for DefinitionLimits {
    fn default() -> Self {
        // A 10,000-wide fan-out plus its fan-in must fit with room to spare.
        DefinitionLimits {
            max_tasks: 50_000,
            max_definition_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The largest `retry_attempts`.
///
/// ```
/// assert_eq!(tributary_core::MAX_RETRY_ATTEMPTS, 100);
/// ```
pub const MAX_RETRY_ATTEMPTS: i64 = 100;
/// The largest `retry_delay_ms` and `retry_max_delay_ms` (one day).
///
/// ```
/// assert_eq!(tributary_core::MAX_DELAY_MS, 24 * 60 * 60 * 1000);
/// ```
pub const MAX_DELAY_MS: i64 = 86_400_000;
/// The largest `timeout_ms` (seven days).
///
/// ```
/// assert_eq!(tributary_core::MAX_TIMEOUT_MS, 7 * 24 * 60 * 60 * 1000);
/// ```
pub const MAX_TIMEOUT_MS: i64 = 604_800_000;

/// The largest `max_in_flight`, the largest capacity an executor may
/// register: a limit above it would be no limit.
pub const MAX_IN_FLIGHT: i64 = 10_000;
const MAX_ID_LEN: usize = 64;
const MAX_HANDLER_LEN: usize = 128;

/// Why a definition was rejected. Every message names the offending
/// workflow, task or value.
///
/// ```
/// use tributary_core::{DefinitionError, WorkflowDefinition};
/// let definition: WorkflowDefinition =
///     serde_json::from_value(serde_json::json!({"name": "w", "tasks": []})).unwrap();
/// let error = definition.validate().unwrap_err();
/// assert_eq!(error, DefinitionError::Empty("w".into()));
/// assert_eq!(error.to_string(), "workflow \"w\" has no tasks");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    /// The workflow's name is not an identifier.
    #[error(
        "invalid workflow name {}: must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter",
        shown(.0)
    )]
    InvalidWorkflowName(String),
    /// The workflow has no task.
    #[error("workflow {} has no tasks", shown(.0))]
    Empty(String),
    /// The workflow has more tasks than the limit allows.
    #[error("workflow {} has {count} tasks, over the limit of {limit} by {}", shown(workflow), count - limit)]
    TooManyTasks {
        /// The workflow's name.
        workflow: String,
        /// Its number of tasks.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The definition as received is larger than the limit allows.
    #[error("workflow {} definition is {bytes} bytes, over the limit of {limit} bytes by {}", shown(workflow), bytes - limit)]
    TooLarge {
        /// The workflow's name.
        workflow: String,
        /// The definition's size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A task id is not an identifier.
    #[error(
        "invalid task id {}: must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter",
        shown(.0)
    )]
    InvalidTaskId(String),
    /// Two tasks share an id.
    #[error("duplicate task id {}", shown(.0))]
    DuplicateTaskId(String),
    /// A task lists itself as a dependency.
    #[error("task {} depends on itself", shown(task))]
    SelfDependency {
        /// The task.
        task: String,
    },
    /// A dependency names no task of the workflow.
    #[error("task {} depends on unknown task {}", shown(task), shown(dependency))]
    UnknownDependency {
        /// The task.
        task: String,
        /// The dependency it lists.
        dependency: String,
    },
    /// A dependency is listed twice.
    #[error(
        "task {} lists dependency {} more than once",
        shown(task),
        shown(dependency)
    )]
    DuplicateDependency {
        /// The task.
        task: String,
        /// The dependency it lists twice.
        dependency: String,
    },
    /// The dependencies form a cycle; the path in the direction work flows.
    #[error("cycle detected: {}", shown_cycle(.0))]
    Cycle(Vec<String>),
    /// A numeric setting is out of range.
    #[error(
        "task {}: {field} must be between {min} and {max}, got {value}",
        shown(task)
    )]
    OutOfRange {
        /// The task.
        task: String,
        /// The setting.
        field: &'static str,
        /// Its value.
        value: i64,
        /// The smallest allowed value.
        min: i64,
        /// The largest allowed value.
        max: i64,
    },
    /// The maximum retry delay is below the base delay.
    #[error(
        "task {}: retry_max_delay_ms ({max_delay_ms}) must be at least retry_delay_ms ({delay_ms})",
        shown(task)
    )]
    MaxDelayBelowDelay {
        /// The task.
        task: String,
        /// Its base delay.
        delay_ms: i64,
        /// Its maximum delay.
        max_delay_ms: i64,
    },
    /// An unknown backoff.
    #[error(
        "task {}: unknown retry_backoff {}; expected one of fixed, linear, exponential",
        shown(task),
        shown(value)
    )]
    UnknownBackoff {
        /// The task.
        task: String,
        /// The backoff it names.
        value: String,
    },
    /// An unknown trigger rule.
    #[error(
        "task {}: unknown trigger_rule {}; expected one of all_success, all_done, one_success, one_failed, none_failed",
        shown(task),
        shown(value)
    )]
    UnknownTriggerRule {
        /// The task.
        task: String,
        /// The rule it names.
        value: String,
    },
    /// A handler name with characters a handler cannot have.
    #[error(
        "task {}: invalid handler {}: must be 1-128 characters of a-z, A-Z, 0-9, _, -, ., : and /",
        shown(task),
        shown(value)
    )]
    InvalidHandler {
        /// The task.
        task: String,
        /// The handler it names.
        value: String,
    },
    /// The concurrency policy is invalid.
    #[error("workflow {}: concurrency {error}", shown(workflow))]
    InvalidConcurrency {
        /// The workflow's name.
        workflow: String,
        /// What is wrong with the policy, naming the field.
        error: ConcurrencyError,
    },
    /// The required labels break the rule of executor labels.
    #[error("task {}: required_labels {error}", shown(task))]
    InvalidRequiredLabels {
        /// The task.
        task: String,
        /// What is wrong with its labels, naming the label.
        error: LabelError,
    },
    /// The map fields are invalid.
    #[error("task {}: {error}", shown(task))]
    InvalidMap {
        /// The task.
        task: String,
        /// What is wrong with its map, naming the field.
        error: MapError,
    },
}

impl DefinitionError {
    /// True for the errors that are about size limits rather than content.
    ///
    /// ```
    /// assert!(!tributary_core::DefinitionError::Empty("w".into()).is_limit());
    /// ```
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            DefinitionError::TooManyTasks { .. } | DefinitionError::TooLarge { .. }
        )
    }
}

/// Whether `text` is a valid workflow name or task id: 1-64 characters of
/// `a-z 0-9 _ -`, starting with a letter.
///
/// ```
/// assert!(tributary_core::is_valid_identifier("load-data_2"));
/// assert!(!tributary_core::is_valid_identifier("2nd"));
/// ```
pub fn is_valid_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    text.len() <= MAX_ID_LEN
        && first.is_ascii_lowercase()
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Whether `text` is a valid handler name: 1-128 characters of
/// `a-z A-Z 0-9 _ - . : /`.
///
/// ```
/// assert!(tributary_core::is_valid_handler("billing.charge:v2"));
/// assert!(!tributary_core::is_valid_handler("my handler"));
/// ```
pub fn is_valid_handler(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_HANDLER_LEN
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
}

impl WorkflowDefinition {
    /// Checks the definition against every rule but the size limits (those
    /// are the server's configuration): cycles with their path, unknown or
    /// duplicate dependencies, duplicate ids, invalid ids and handlers,
    /// settings out of range, unknown backoffs and trigger rules.
    ///
    /// ```
    /// let definition: tributary_core::WorkflowDefinition = serde_json::from_str(
    ///     r#"{"name": "w", "tasks": [{"id": "a", "dependencies": ["b"]}, {"id": "b", "dependencies": ["a"]}]}"#,
    /// ).unwrap();
    /// assert_eq!(definition.validate().unwrap_err().to_string(), "cycle detected: a -> b -> a");
    /// ```
    pub fn validate(&self) -> Result<(), DefinitionError> {
        validate(self, 0, DefinitionLimits::UNLIMITED).map(|_| ())
    }
}

/// Validates a definition and returns its normalized form. `encoded_bytes` is
/// the size of the definition as received, checked against the limit.
///
/// ```
/// use tributary_core::{DefinitionLimits, TaskDefinition, WorkflowDefinition, validate};
/// let definition = WorkflowDefinition {
///     name: "w".into(),
///     tasks: vec![TaskDefinition { id: "a".into(), ..Default::default() }],
///     ..Default::default()
/// };
/// let spec = validate(&definition, 0, DefinitionLimits::default()).unwrap();
/// assert_eq!(spec.tasks[0].retry.delay_ms, 1000);
/// ```
pub fn validate(
    input: &WorkflowDefinition,
    encoded_bytes: usize,
    limits: DefinitionLimits,
) -> Result<WorkflowSpec, DefinitionError> {
    if !is_valid_identifier(&input.name) {
        return Err(DefinitionError::InvalidWorkflowName(input.name.clone()));
    }
    if encoded_bytes > limits.max_definition_bytes {
        return Err(DefinitionError::TooLarge {
            workflow: input.name.clone(),
            bytes: encoded_bytes,
            limit: limits.max_definition_bytes,
        });
    }
    if input.tasks.is_empty() {
        return Err(DefinitionError::Empty(input.name.clone()));
    }
    if input.tasks.len() > limits.max_tasks {
        return Err(DefinitionError::TooManyTasks {
            workflow: input.name.clone(),
            count: input.tasks.len(),
            limit: limits.max_tasks,
        });
    }

    let concurrency = match &input.concurrency {
        None => None,
        Some(policy) => {
            Some(
                policy
                    .normalize()
                    .map_err(|error| DefinitionError::InvalidConcurrency {
                        workflow: input.name.clone(),
                        error,
                    })?,
            )
        }
    };
    let mut tasks: BTreeMap<&str, TaskSpec> = BTreeMap::new();
    for task in &input.tasks {
        if !is_valid_identifier(&task.id) {
            return Err(DefinitionError::InvalidTaskId(task.id.clone()));
        }
        let spec = normalize_task(&input.name, task)?;
        if tasks.insert(task.id.as_str(), spec).is_some() {
            return Err(DefinitionError::DuplicateTaskId(task.id.clone()));
        }
    }
    for task in &input.tasks {
        let mut seen = BTreeSet::new();
        for dependency in &task.dependencies {
            if dependency == &task.id {
                return Err(DefinitionError::SelfDependency {
                    task: task.id.clone(),
                });
            }
            if !tasks.contains_key(dependency.as_str()) {
                return Err(DefinitionError::UnknownDependency {
                    task: task.id.clone(),
                    dependency: dependency.clone(),
                });
            }
            if !seen.insert(dependency.as_str()) {
                return Err(DefinitionError::DuplicateDependency {
                    task: task.id.clone(),
                    dependency: dependency.clone(),
                });
            }
        }
    }
    let tasks: Vec<TaskSpec> = tasks.into_values().collect();
    if let Some(cycle) = find_cycle(&tasks) {
        return Err(DefinitionError::Cycle(cycle));
    }
    Ok(WorkflowSpec {
        name: input.name.clone(),
        description: input.description.clone(),
        tasks,
        concurrency,
    })
}

fn normalize_task(workflow: &str, task: &TaskDefinition) -> Result<TaskSpec, DefinitionError> {
    let in_range = |field: &'static str, value: i64, min: i64, max: i64| {
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(DefinitionError::OutOfRange {
                task: task.id.clone(),
                field,
                value,
                min,
                max,
            })
        }
    };
    let attempts = match task.retry_attempts {
        Some(value) => in_range("retry_attempts", value, 0, MAX_RETRY_ATTEMPTS)?,
        None => i64::from(DEFAULT_RETRY_ATTEMPTS),
    };
    let delay_ms = match task.retry_delay_ms {
        Some(value) => in_range("retry_delay_ms", value, 0, MAX_DELAY_MS)?,
        None => DEFAULT_RETRY_DELAY_MS as i64,
    };
    let max_delay_ms = match task.retry_max_delay_ms {
        Some(value) => in_range("retry_max_delay_ms", value, 0, MAX_DELAY_MS)?,
        // An explicit delay above the default cap raises the cap with it, so
        // `retry_delay_ms = 60000` alone means what it says.
        None => (DEFAULT_RETRY_MAX_DELAY_MS as i64).max(delay_ms),
    };
    if max_delay_ms < delay_ms {
        return Err(DefinitionError::MaxDelayBelowDelay {
            task: task.id.clone(),
            delay_ms,
            max_delay_ms,
        });
    }
    let timeout_ms = match task.timeout_ms {
        Some(value) => Some(in_range("timeout_ms", value, 1, MAX_TIMEOUT_MS)?),
        None => None,
    };
    let max_in_flight = match task.max_in_flight {
        Some(value) => Some(in_range("max_in_flight", value, 1, MAX_IN_FLIGHT)?),
        None => None,
    };
    let backoff = if task.retry_backoff.is_empty() {
        Backoff::Exponential
    } else {
        Backoff::parse(&task.retry_backoff).ok_or_else(|| DefinitionError::UnknownBackoff {
            task: task.id.clone(),
            value: task.retry_backoff.clone(),
        })?
    };
    let trigger_rule = if task.trigger_rule.is_empty() {
        TriggerRule::AllSuccess
    } else {
        TriggerRule::parse(&task.trigger_rule).ok_or_else(|| {
            DefinitionError::UnknownTriggerRule {
                task: task.id.clone(),
                value: task.trigger_rule.clone(),
            }
        })?
    };
    if !task.handler.is_empty() && !is_valid_handler(&task.handler) {
        return Err(DefinitionError::InvalidHandler {
            task: task.id.clone(),
            value: task.handler.clone(),
        });
    }
    check_labels(&task.required_labels).map_err(|error| {
        DefinitionError::InvalidRequiredLabels {
            task: task.id.clone(),
            error,
        }
    })?;
    let map = normalize_map(
        &task.id,
        &task.map_over,
        &task.map_output,
        task.map_max_instances,
    )
    .map_err(|error| DefinitionError::InvalidMap {
        task: task.id.clone(),
        error,
    })?;
    let mut dependencies = task.dependencies.clone();
    dependencies.sort();
    // The ranges above were checked, so these conversions cannot fail.
    Ok(TaskSpec {
        id: task.id.clone(),
        dependencies,
        retry: RetryPolicy {
            attempts: u32::try_from(attempts).unwrap_or(0),
            delay_ms: u64::try_from(delay_ms).unwrap_or(0),
            backoff,
            max_delay_ms: u64::try_from(max_delay_ms).unwrap_or(0),
            jitter: task.retry_jitter.unwrap_or(DEFAULT_RETRY_JITTER),
        },
        timeout_ms: timeout_ms.and_then(|ms| u64::try_from(ms).ok()),
        trigger_rule,
        handler: task.handler_name(workflow),
        required_labels: task.required_labels.clone(),
        max_in_flight: max_in_flight.and_then(|limit| u32::try_from(limit).ok()),
        map,
    })
}
