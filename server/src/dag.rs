//! Validation of workflow definitions: identifiers, retry settings, trigger
//! rules, limits, and the DAG itself (petgraph). Every rejection names its
//! culprit, because the message is all a user sees of it.
//!
//! Pure: no I/O, no protobuf, no SQL.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::algo::{kosaraju_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::definition::{
    Backoff, DEFAULT_RETRY_ATTEMPTS, DEFAULT_RETRY_DELAY_MS, DEFAULT_RETRY_JITTER,
    DEFAULT_RETRY_MAX_DELAY_MS, RetryPolicy, TaskDefinitionInput, TaskSpec, TriggerRule,
    WorkflowDefinitionInput, WorkflowSpec,
};

/// Upper bounds of a definition; both configurable on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefinitionLimits {
    pub max_tasks: usize,
    pub max_definition_bytes: usize,
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

pub const MAX_RETRY_ATTEMPTS: i64 = 100;
pub const MAX_DELAY_MS: i64 = 86_400_000;
pub const MAX_TIMEOUT_MS: i64 = 604_800_000;
const MAX_ID_LEN: usize = 64;
const MAX_HANDLER_LEN: usize = 128;

/// Why a definition was rejected. Every message names the offending workflow,
/// task or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    #[error(
        "invalid workflow name {0:?}: must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter"
    )]
    InvalidWorkflowName(String),
    #[error("workflow {0:?} has no tasks")]
    Empty(String),
    #[error("workflow {workflow:?} has {count} tasks, over the limit of {limit} by {}", count - limit)]
    TooManyTasks {
        workflow: String,
        count: usize,
        limit: usize,
    },
    #[error("workflow {workflow:?} definition is {bytes} bytes, over the limit of {limit} bytes by {}", bytes - limit)]
    TooLarge {
        workflow: String,
        bytes: usize,
        limit: usize,
    },
    #[error(
        "invalid task id {0:?}: must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter"
    )]
    InvalidTaskId(String),
    #[error("duplicate task id {0:?}")]
    DuplicateTaskId(String),
    #[error("task {task:?} depends on itself")]
    SelfDependency { task: String },
    #[error("task {task:?} depends on unknown task {dependency:?}")]
    UnknownDependency { task: String, dependency: String },
    #[error("task {task:?} lists dependency {dependency:?} more than once")]
    DuplicateDependency { task: String, dependency: String },
    #[error("cycle detected: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("task {task:?}: {field} must be between {min} and {max}, got {value}")]
    OutOfRange {
        task: String,
        field: &'static str,
        value: i64,
        min: i64,
        max: i64,
    },
    #[error(
        "task {task:?}: retry_max_delay_ms ({max_delay_ms}) must be at least retry_delay_ms ({delay_ms})"
    )]
    MaxDelayBelowDelay {
        task: String,
        delay_ms: i64,
        max_delay_ms: i64,
    },
    #[error(
        "task {task:?}: unknown retry_backoff {value:?}; expected one of fixed, linear, exponential"
    )]
    UnknownBackoff { task: String, value: String },
    #[error(
        "task {task:?}: unknown trigger_rule {value:?}; expected one of all_success, all_done, one_success, one_failed, none_failed"
    )]
    UnknownTriggerRule { task: String, value: String },
    #[error(
        "task {task:?}: invalid handler {value:?}: must be 1-128 characters of a-z, A-Z, 0-9, _, -, ., : and /"
    )]
    InvalidHandler { task: String, value: String },
}

impl DefinitionError {
    /// True for the errors that are about size limits rather than content.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            DefinitionError::TooManyTasks { .. } | DefinitionError::TooLarge { .. }
        )
    }
}

/// Whether `text` is a valid workflow name or task id: 1-64 characters of
/// `a-z 0-9 _ -`, starting with a letter.
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
pub fn is_valid_handler(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_HANDLER_LEN
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
}

/// Validates a definition and returns its normalized form. `encoded_bytes` is
/// the size of the definition as received, checked against the limit.
pub fn validate(
    input: &WorkflowDefinitionInput,
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
    })
}

fn normalize_task(workflow: &str, task: &TaskDefinitionInput) -> Result<TaskSpec, DefinitionError> {
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
    let handler = if task.handler.is_empty() {
        format!("{workflow}.{}", task.id)
    } else if is_valid_handler(&task.handler) {
        task.handler.clone()
    } else {
        return Err(DefinitionError::InvalidHandler {
            task: task.id.clone(),
            value: task.handler.clone(),
        });
    };
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
        handler,
    })
}

/// Finds a cycle among tasks whose dependencies all exist, as a path in the
/// direction work flows (`a -> b` means `b` depends on `a`) that starts and
/// ends at the same task, e.g. `["a", "b", "c", "a"]`. Deterministic: the
/// cycle through the smallest task id of the lexicographically first strongly
/// connected component is reported, trying smaller ids first.
fn find_cycle(tasks: &[TaskSpec]) -> Option<Vec<String>> {
    let mut graph: DiGraph<&str, ()> = DiGraph::with_capacity(tasks.len(), 0);
    let index_of: BTreeMap<&str, NodeIndex> = tasks
        .iter()
        .map(|task| (task.id.as_str(), graph.add_node(task.id.as_str())))
        .collect();
    let mut dependants_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for task in tasks {
        for dependency in &task.dependencies {
            graph.add_edge(
                index_of[dependency.as_str()],
                index_of[task.id.as_str()],
                (),
            );
            dependants_of
                .entry(dependency.as_str())
                .or_default()
                .push(task.id.as_str());
        }
    }
    // Both algorithms are iterative: a 10,000-task chain must not overflow the
    // stack, which the recursive Tarjan implementation does.
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

    // Depth-first search within the component until an edge leads back to
    // the start; in a strongly connected component one always does.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, dependencies: &[&str]) -> TaskDefinitionInput {
        TaskDefinitionInput {
            id: id.to_owned(),
            dependencies: dependencies.iter().map(|d| (*d).to_owned()).collect(),
            ..TaskDefinitionInput::default()
        }
    }

    fn workflow(tasks: Vec<TaskDefinitionInput>) -> WorkflowDefinitionInput {
        WorkflowDefinitionInput {
            name: "wf".to_owned(),
            description: String::new(),
            tasks,
        }
    }

    fn check(input: &WorkflowDefinitionInput) -> Result<WorkflowSpec, DefinitionError> {
        validate(input, 0, DefinitionLimits::default())
    }

    #[test]
    fn defaults_are_filled_in_and_tasks_sorted() {
        let spec = check(&workflow(vec![task("b", &["a"]), task("a", &[])])).expect("valid");
        assert_eq!(spec.tasks[0].id, "a");
        assert_eq!(spec.tasks[1].id, "b");
        let b = &spec.tasks[1];
        assert_eq!(
            b.retry,
            RetryPolicy {
                attempts: 0,
                delay_ms: 1000,
                backoff: Backoff::Exponential,
                max_delay_ms: 30_000,
                jitter: true
            }
        );
        assert_eq!(b.trigger_rule, TriggerRule::AllSuccess);
        assert_eq!(b.handler, "wf.b");
        assert_eq!(b.timeout_ms, None);
    }

    #[test]
    fn version_ignores_task_and_dependency_order_but_not_content() {
        let one = check(&workflow(vec![
            task("c", &["a", "b"]),
            task("a", &[]),
            task("b", &[]),
        ]))
        .expect("valid");
        let two = check(&workflow(vec![
            task("a", &[]),
            task("b", &[]),
            task("c", &["b", "a"]),
        ]))
        .expect("valid");
        assert_eq!(one.version(), two.version());
        assert_eq!(one.version().len(), 16);
        let mut changed = workflow(vec![task("a", &[]), task("b", &[]), task("c", &["b", "a"])]);
        changed.tasks[0].retry_attempts = Some(1);
        assert_ne!(check(&changed).expect("valid").version(), one.version());
    }

    #[test]
    fn explicit_defaults_hash_like_unset_ones() {
        let implicit = check(&workflow(vec![task("a", &[])])).expect("valid");
        let mut explicit_task = task("a", &[]);
        explicit_task.retry_attempts = Some(0);
        explicit_task.retry_delay_ms = Some(1000);
        explicit_task.retry_backoff = "exponential".to_owned();
        explicit_task.retry_max_delay_ms = Some(30_000);
        explicit_task.retry_jitter = Some(true);
        explicit_task.trigger_rule = "all_success".to_owned();
        explicit_task.handler = "wf.a".to_owned();
        let explicit = check(&workflow(vec![explicit_task])).expect("valid");
        assert_eq!(implicit.version(), explicit.version());
    }

    #[test]
    fn normalized_spec_round_trips_through_input_and_json() {
        let spec = check(&workflow(vec![task("b", &["a"]), task("a", &[])])).expect("valid");
        let again = check(&WorkflowDefinitionInput::from(&spec)).expect("valid");
        assert_eq!(spec, again);
        let stored = WorkflowSpec::from_canonical_json(&spec.canonical_json()).expect("parses");
        assert_eq!(stored, spec);
    }

    #[test]
    fn cycle_is_reported_with_its_path() {
        let error = check(&workflow(vec![
            task("a", &["c"]),
            task("b", &["a"]),
            task("c", &["b"]),
            task("d", &[]),
        ]))
        .expect_err("cycle");
        assert_eq!(error.to_string(), "cycle detected: a -> b -> c -> a");
    }

    #[test]
    fn two_node_cycle_inside_a_larger_graph() {
        let error = check(&workflow(vec![
            task("root", &[]),
            task("x", &["root", "y"]),
            task("y", &["x", "w"]),
            task("w", &["root"]),
            task("z", &["y"]),
        ]))
        .expect_err("cycle");
        assert_eq!(
            error,
            DefinitionError::Cycle(vec!["x".into(), "y".into(), "x".into()])
        );
    }

    #[test]
    fn long_chain_and_wide_fan_out_are_valid() {
        let chain: Vec<_> = (0..10_000)
            .map(|i| {
                if i == 0 {
                    task("t0", &[])
                } else {
                    task(&format!("t{i}"), &[&format!("t{}", i - 1)])
                }
            })
            .collect();
        assert!(check(&workflow(chain)).is_ok());
        let mut fan: Vec<_> = (0..10_000)
            .map(|i| task(&format!("s{i}"), &["root"]))
            .collect();
        fan.push(task("root", &[]));
        let ids: Vec<String> = (0..10_000).map(|i| format!("s{i}")).collect();
        let mut fan_in = task("sink", &[]);
        fan_in.dependencies = ids;
        fan.push(fan_in);
        assert!(check(&workflow(fan)).is_ok());
    }

    #[test]
    fn identifiers() {
        for valid in ["a", "a1", "a_b-c", &"a".repeat(64)] {
            assert!(is_valid_identifier(valid), "{valid}");
        }
        for invalid in ["", "1a", "_a", "A", "a b", "a.b", "é", &"a".repeat(65)] {
            assert!(!is_valid_identifier(invalid), "{invalid}");
        }
    }

    #[test]
    fn limits_name_the_limit_and_the_excess() {
        let limits = DefinitionLimits {
            max_tasks: 2,
            max_definition_bytes: 100,
        };
        let three = workflow(vec![task("a", &[]), task("b", &[]), task("c", &[])]);
        let error = validate(&three, 10, limits).expect_err("too many");
        assert_eq!(
            error.to_string(),
            "workflow \"wf\" has 3 tasks, over the limit of 2 by 1"
        );
        assert!(error.is_limit());
        let error = validate(&workflow(vec![task("a", &[])]), 150, limits).expect_err("too big");
        assert_eq!(
            error.to_string(),
            "workflow \"wf\" definition is 150 bytes, over the limit of 100 bytes by 50"
        );
    }

    #[test]
    fn explicit_delay_above_default_cap_raises_the_cap() {
        let mut slow = task("a", &[]);
        slow.retry_delay_ms = Some(60_000);
        let spec = check(&workflow(vec![slow])).expect("valid");
        assert_eq!(spec.tasks[0].retry.max_delay_ms, 60_000);
    }

    /// The shared vectors are the contract every SDK's local validation
    /// follows; the pure validator must agree with them exactly.
    #[test]
    fn shared_validation_vectors() {
        let text = include_str!("../../tests/vectors/validation.json");
        let vectors: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
        let cases = vectors["cases"].as_array().expect("cases");
        for case in cases {
            let name = case["name"].as_str().expect("name");
            let input: WorkflowDefinitionInput =
                serde_json::from_value(case["definition"].clone()).expect(name);
            let result = check(&input);
            match case["error"].as_object() {
                None => assert!(result.is_ok(), "{name}: {result:?}"),
                Some(error) => {
                    assert_eq!(error["code"], "INVALID_ARGUMENT", "{name}");
                    let message = result.expect_err(name).to_string();
                    assert_eq!(
                        message,
                        error["message"].as_str().expect("message"),
                        "{name}"
                    );
                }
            }
        }
    }
}
