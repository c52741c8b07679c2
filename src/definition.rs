//! Workflow definitions between the wire and `tributary-core`, in both
//! directions; the server and the Rust SDK convert the same way.

use tributary_core::{ConcurrencyDefinition, TaskDefinition, WorkflowDefinition};

use crate::v1 as pb;

impl From<pb::WorkflowDefinition> for WorkflowDefinition {
    fn from(definition: pb::WorkflowDefinition) -> Self {
        WorkflowDefinition {
            name: definition.name,
            description: definition.description,
            tasks: definition
                .tasks
                .into_iter()
                .map(|task| TaskDefinition {
                    id: task.id,
                    dependencies: task.dependencies,
                    retry_attempts: task.retry_attempts.map(i64::from),
                    retry_delay_ms: task.retry_delay_ms,
                    retry_backoff: task.retry_backoff,
                    retry_max_delay_ms: task.retry_max_delay_ms,
                    retry_jitter: task.retry_jitter,
                    timeout_ms: task.timeout_ms,
                    trigger_rule: task.trigger_rule,
                    handler: task.handler,
                    required_labels: task.required_labels.into_iter().collect(),
                    max_in_flight: task.max_in_flight.map(i64::from),
                    map_over: task.map_over,
                    map_output: task.map_output,
                    map_max_instances: task.map_max_instances.map(i64::from),
                })
                .collect(),
            concurrency: definition.concurrency.map(|policy| ConcurrencyDefinition {
                key_pointer: policy.key_pointer,
                fixed_key: policy.fixed_key,
                max_active_runs: policy.max_active_runs.map(i64::from),
                strategy: policy.strategy,
            }),
        }
    }
}

impl From<&WorkflowDefinition> for pb::WorkflowDefinition {
    /// Numbers out of the wire type's range are clamped to it, which
    /// validation then rejects with the range in the message.
    fn from(definition: &WorkflowDefinition) -> Self {
        pb::WorkflowDefinition {
            name: definition.name.clone(),
            description: definition.description.clone(),
            tasks: definition
                .tasks
                .iter()
                .map(|task| pb::TaskDefinition {
                    id: task.id.clone(),
                    dependencies: task.dependencies.clone(),
                    retry_attempts: task.retry_attempts.map(clamp_to_i32),
                    retry_delay_ms: task.retry_delay_ms,
                    retry_backoff: task.retry_backoff.clone(),
                    retry_max_delay_ms: task.retry_max_delay_ms,
                    retry_jitter: task.retry_jitter,
                    timeout_ms: task.timeout_ms,
                    trigger_rule: task.trigger_rule.clone(),
                    handler: task.handler.clone(),
                    required_labels: task
                        .required_labels
                        .iter()
                        .map(|(key, value)| (key.clone(), value.clone()))
                        .collect(),
                    max_in_flight: task.max_in_flight.map(clamp_to_i32),
                    map_over: task.map_over.clone(),
                    map_output: task.map_output.clone(),
                    map_max_instances: task.map_max_instances.map(clamp_to_i32),
                })
                .collect(),
            concurrency: definition
                .concurrency
                .as_ref()
                .map(|policy| pb::ConcurrencyPolicy {
                    key_pointer: policy.key_pointer.clone(),
                    fixed_key: policy.fixed_key.clone(),
                    max_active_runs: policy.max_active_runs.map(clamp_to_i32),
                    strategy: policy.strategy.clone(),
                }),
        }
    }
}

fn clamp_to_i32(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(if n < 0 { i32::MIN } else { i32::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_round_trip_and_out_of_range_numbers_clamp() {
        let definition = WorkflowDefinition {
            name: "w".into(),
            description: "d".into(),
            tasks: vec![TaskDefinition {
                id: "a".into(),
                dependencies: vec!["b".into()],
                retry_attempts: Some(3),
                retry_delay_ms: Some(10),
                retry_backoff: "fixed".into(),
                retry_max_delay_ms: Some(20),
                retry_jitter: Some(false),
                timeout_ms: Some(30),
                trigger_rule: "all_done".into(),
                handler: "h".into(),
                required_labels: [("gpu".to_owned(), "true".to_owned())].into(),
                max_in_flight: Some(4),
                map_over: "items".into(),
                map_output: "out".into(),
                map_max_instances: Some(5),
            }],
            concurrency: Some(ConcurrencyDefinition {
                key_pointer: "/customer".into(),
                fixed_key: String::new(),
                max_active_runs: Some(3),
                strategy: "cancel_newest".into(),
            }),
        };
        let wire = pb::WorkflowDefinition::from(&definition);
        assert_eq!(WorkflowDefinition::from(wire), definition);
        let mut huge = definition.clone();
        huge.tasks[0].retry_attempts = Some(i64::MAX);
        assert_eq!(
            pb::WorkflowDefinition::from(&huge).tasks[0].retry_attempts,
            Some(i32::MAX)
        );
        huge.tasks[0].retry_attempts = Some(-5_000_000_000);
        assert_eq!(
            pb::WorkflowDefinition::from(&huge).tasks[0].retry_attempts,
            Some(i32::MIN)
        );
        huge.concurrency = Some(ConcurrencyDefinition {
            max_active_runs: Some(i64::MAX),
            ..Default::default()
        });
        assert_eq!(
            pb::WorkflowDefinition::from(&huge)
                .concurrency
                .and_then(|policy| policy.max_active_runs),
            Some(i32::MAX)
        );
    }
}
