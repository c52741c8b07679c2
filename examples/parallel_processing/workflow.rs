//! The seed workflow's definition, compiled in from
//! `examples/parallel_processing.workflow.yaml` (the same file the CLI
//! registers), and the handler each of its tasks is routed to.

use tributary_proto::v1 as pb;
use tributary_server::definition::WorkflowDefinitionInput;

/// The definition file, as written for `tributary workflow register`.
pub const DEFINITION_YAML: &str = include_str!("../parallel_processing.workflow.yaml");

/// The parsed definition.
pub fn definition() -> WorkflowDefinitionInput {
    serde_yaml::from_str(DEFINITION_YAML)
        .expect("examples/parallel_processing.workflow.yaml is a valid definition file")
}

/// The definition as `RegisterWorkflow` takes it.
pub fn definition_proto() -> pb::WorkflowDefinition {
    tributary_server::api::convert::definition_input_to_proto(&definition())
}

/// `(task id, handler)` for every task: the task's `handler`, or the
/// default `<workflow>.<task id>`.
pub fn handlers(definition: &WorkflowDefinitionInput) -> Vec<(String, String)> {
    definition
        .tasks
        .iter()
        .map(|task| {
            let handler = if task.handler.is_empty() {
                format!("{}.{}", definition.name, task.id)
            } else {
                task.handler.clone()
            };
            (task.id.clone(), handler)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_of_the_definition_has_a_function_and_vice_versa() {
        let definition = definition();
        assert_eq!(definition.name, "parallel_processing");
        let mut defined: Vec<String> = definition.tasks.iter().map(|t| t.id.clone()).collect();
        let mut implemented: Vec<String> = crate::tasks::all()
            .into_iter()
            .map(|(id, _)| id.to_owned())
            .collect();
        defined.sort();
        implemented.sort();
        assert_eq!(defined, implemented);
        assert!(
            handlers(&definition)
                .iter()
                .all(|(id, handler)| *handler == format!("parallel_processing.{id}"))
        );
    }
}
