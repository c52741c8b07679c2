//! Local validation of workflow definitions, with the same rules and the
//! same messages as the server's validator (`tributary_server::dag`), proven
//! by the shared vectors in `tests/vectors/validation.json`. Size limits are
//! configured on the server and only checked there.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::algo::{kosaraju_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::workflow::{TaskDefinition, WorkflowDefinition};

/// The retry backoffs the server knows.
///
/// ```
/// assert!(tributary::BACKOFFS.contains(&"linear"));
/// ```
pub const BACKOFFS: [&str; 3] = ["fixed", "linear", "exponential"];
/// The trigger rules the server knows.
///
/// ```
/// assert!(tributary::TRIGGER_RULES.contains(&"all_done"));
/// ```
pub const TRIGGER_RULES: [&str; 5] = [
    "all_success",
    "all_done",
    "one_success",
    "one_failed",
    "none_failed",
];
/// The largest `retry_attempts`.
///
/// ```
/// assert_eq!(tributary::MAX_RETRY_ATTEMPTS, 100);
/// ```
pub const MAX_RETRY_ATTEMPTS: i64 = 100;
/// The largest `retry_delay_ms` and `retry_max_delay_ms` (one day).
///
/// ```
/// assert_eq!(tributary::MAX_DELAY_MS, 24 * 60 * 60 * 1000);
/// ```
pub const MAX_DELAY_MS: i64 = 86_400_000;
/// The largest `timeout_ms` (seven days).
///
/// ```
/// assert_eq!(tributary::MAX_TIMEOUT_MS, 7 * 24 * 60 * 60 * 1000);
/// ```
pub const MAX_TIMEOUT_MS: i64 = 604_800_000;
const DEFAULT_RETRY_DELAY_MS: i64 = 1_000;
const DEFAULT_RETRY_MAX_DELAY_MS: i64 = 30_000;

/// Why a definition is invalid; the messages are the server's.
///
/// ```
/// use tributary::{DefinitionError, WorkflowDefinition};
/// let definition: WorkflowDefinition =
///     serde_json::from_value(serde_json::json!({"name": "w", "tasks": []})).unwrap();
/// let error = definition.validate().unwrap_err();
/// assert_eq!(error, DefinitionError::Empty("w".into()));
/// assert_eq!(error.to_string(), "workflow \"w\" has no tasks");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)]
pub enum DefinitionError {
    /// The workflow's name is not an identifier.
    #[error(
        "invalid workflow name {0:?}: must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter"
    )]
    InvalidWorkflowName(String),
    /// The workflow has no task.
    #[error("workflow {0:?} has no tasks")]
    Empty(String),
    /// A task id is not an identifier.
    #[error(
        "invalid task id {0:?}: must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter"
    )]
    InvalidTaskId(String),
    /// Two tasks share an id.
    #[error("duplicate task id {0:?}")]
    DuplicateTaskId(String),
    /// A task lists itself as a dependency.
    #[error("task {task:?} depends on itself")]
    SelfDependency { task: String },
    /// A dependency names no task of the workflow.
    #[error("task {task:?} depends on unknown task {dependency:?}")]
    UnknownDependency { task: String, dependency: String },
    /// A dependency is listed twice.
    #[error("task {task:?} lists dependency {dependency:?} more than once")]
    DuplicateDependency { task: String, dependency: String },
    /// The dependencies form a cycle; the path in the direction work flows.
    #[error("cycle detected: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A numeric setting is out of range.
    #[error("task {task:?}: {field} must be between {min} and {max}, got {value}")]
    OutOfRange {
        task: String,
        field: &'static str,
        value: i64,
        min: i64,
        max: i64,
    },
    /// The maximum retry delay is below the base delay.
    #[error(
        "task {task:?}: retry_max_delay_ms ({max_delay_ms}) must be at least retry_delay_ms ({delay_ms})"
    )]
    MaxDelayBelowDelay {
        task: String,
        delay_ms: i64,
        max_delay_ms: i64,
    },
    /// An unknown backoff.
    #[error(
        "task {task:?}: unknown retry_backoff {value:?}; expected one of fixed, linear, exponential"
    )]
    UnknownBackoff { task: String, value: String },
    /// An unknown trigger rule.
    #[error(
        "task {task:?}: unknown trigger_rule {value:?}; expected one of all_success, all_done, one_success, one_failed, none_failed"
    )]
    UnknownTriggerRule { task: String, value: String },
    /// A handler name with characters a handler cannot have.
    #[error(
        "task {task:?}: invalid handler {value:?}: must be 1-128 characters of a-z, A-Z, 0-9, _, -, ., : and /"
    )]
    InvalidHandler { task: String, value: String },
}

/// Whether `text` is a valid workflow name or task id: 1-64 characters of
/// `a-z 0-9 _ -`, starting with a letter.
///
/// ```
/// assert!(tributary::is_valid_identifier("load-data_2"));
/// assert!(!tributary::is_valid_identifier("2nd"));
/// ```
pub fn is_valid_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    text.len() <= 64
        && first.is_ascii_lowercase()
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Whether `text` is a valid handler name: 1-128 characters of
/// `a-z A-Z 0-9 _ - . : /`.
///
/// ```
/// assert!(tributary::is_valid_handler("billing.charge:v2"));
/// assert!(!tributary::is_valid_handler("my handler"));
/// ```
pub fn is_valid_handler(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
}

pub(crate) fn validate(definition: &WorkflowDefinition) -> Result<(), DefinitionError> {
    if !is_valid_identifier(&definition.name) {
        return Err(DefinitionError::InvalidWorkflowName(
            definition.name.clone(),
        ));
    }
    if definition.tasks.is_empty() {
        return Err(DefinitionError::Empty(definition.name.clone()));
    }
    let mut ids: BTreeMap<&str, &TaskDefinition> = BTreeMap::new();
    for task in &definition.tasks {
        if !is_valid_identifier(&task.id) {
            return Err(DefinitionError::InvalidTaskId(task.id.clone()));
        }
        check_settings(task)?;
        if ids.insert(task.id.as_str(), task).is_some() {
            return Err(DefinitionError::DuplicateTaskId(task.id.clone()));
        }
    }
    for task in &definition.tasks {
        let mut seen = BTreeSet::new();
        for dependency in &task.dependencies {
            if dependency == &task.id {
                return Err(DefinitionError::SelfDependency {
                    task: task.id.clone(),
                });
            }
            if !ids.contains_key(dependency.as_str()) {
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
    match find_cycle(ids.values().copied()) {
        Some(cycle) => Err(DefinitionError::Cycle(cycle)),
        None => Ok(()),
    }
}

fn check_settings(task: &TaskDefinition) -> Result<(), DefinitionError> {
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
    if let Some(value) = task.retry_attempts {
        in_range("retry_attempts", i64::from(value), 0, MAX_RETRY_ATTEMPTS)?;
    }
    let delay_ms = match task.retry_delay_ms {
        Some(value) => in_range("retry_delay_ms", value, 0, MAX_DELAY_MS)?,
        None => DEFAULT_RETRY_DELAY_MS,
    };
    let max_delay_ms = match task.retry_max_delay_ms {
        Some(value) => in_range("retry_max_delay_ms", value, 0, MAX_DELAY_MS)?,
        None => DEFAULT_RETRY_MAX_DELAY_MS.max(delay_ms),
    };
    if max_delay_ms < delay_ms {
        return Err(DefinitionError::MaxDelayBelowDelay {
            task: task.id.clone(),
            delay_ms,
            max_delay_ms,
        });
    }
    if let Some(value) = task.timeout_ms {
        in_range("timeout_ms", value, 1, MAX_TIMEOUT_MS)?;
    }
    if !task.retry_backoff.is_empty() && !BACKOFFS.contains(&task.retry_backoff.as_str()) {
        return Err(DefinitionError::UnknownBackoff {
            task: task.id.clone(),
            value: task.retry_backoff.clone(),
        });
    }
    if !task.trigger_rule.is_empty() && !TRIGGER_RULES.contains(&task.trigger_rule.as_str()) {
        return Err(DefinitionError::UnknownTriggerRule {
            task: task.id.clone(),
            value: task.trigger_rule.clone(),
        });
    }
    if !task.handler.is_empty() && !is_valid_handler(&task.handler) {
        return Err(DefinitionError::InvalidHandler {
            task: task.id.clone(),
            value: task.handler.clone(),
        });
    }
    Ok(())
}

/// The cycle the server reports: within the strongly connected component
/// whose sorted ids are smallest, a depth-first path from its smallest id
/// along sorted dependants back to it. `tasks` come sorted by id.
fn find_cycle<'a>(tasks: impl Iterator<Item = &'a TaskDefinition>) -> Option<Vec<String>> {
    let tasks: Vec<&TaskDefinition> = tasks.collect();
    let mut graph: DiGraph<&str, ()> = DiGraph::with_capacity(tasks.len(), 0);
    let index_of: BTreeMap<&str, NodeIndex> = tasks
        .iter()
        .map(|task| (task.id.as_str(), graph.add_node(task.id.as_str())))
        .collect();
    let mut dependants_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for task in &tasks {
        let mut dependencies: Vec<&str> = task.dependencies.iter().map(String::as_str).collect();
        dependencies.sort_unstable();
        for dependency in dependencies {
            graph.add_edge(index_of[dependency], index_of[task.id.as_str()], ());
            dependants_of
                .entry(dependency)
                .or_default()
                .push(task.id.as_str());
        }
    }
    if toposort(&graph, None).is_ok() {
        return None;
    }
    let component = kosaraju_scc(&graph)
        .into_iter()
        .filter(|component| component.len() > 1)
        .map(|component| {
            let mut ids: Vec<&str> = component.iter().map(|&node| graph[node]).collect();
            ids.sort_unstable();
            ids
        })
        .min()?;
    let members: BTreeSet<&str> = component.iter().copied().collect();
    let start = component[0];
    let successors = |id: &str| -> Vec<&str> {
        let mut next: Vec<&str> = dependants_of
            .get(id)
            .map(|dependants| {
                dependants
                    .iter()
                    .copied()
                    .filter(|dependant| members.contains(dependant))
                    .collect()
            })
            .unwrap_or_default();
        next.sort_unstable();
        next
    };
    let mut path = vec![start];
    let mut visited = BTreeSet::from([start]);
    let mut next_choice = vec![0usize];
    while let Some(&current) = path.last() {
        let candidates = successors(current);
        if candidates.contains(&start) {
            let mut cycle: Vec<String> = path.iter().map(|id| (*id).to_owned()).collect();
            cycle.push(start.to_owned());
            return Some(cycle);
        }
        let choice = next_choice.last_mut()?;
        match candidates.get(*choice) {
            Some(&next) => {
                *choice += 1;
                if visited.insert(next) {
                    path.push(next);
                    next_choice.push(0);
                }
            }
            None => {
                path.pop();
                next_choice.pop();
            }
        }
    }
    None
}
