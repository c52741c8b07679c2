//! Conversions between `tributary.v1` messages and domain types. The only
//! place, besides the handlers' signatures, where both worlds meet.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tributary_proto::{timestamp_from_unix_ms, v1 as pb};

use super::error::ApiError;
use crate::definition::{TaskDefinitionInput, WorkflowDefinitionInput};
use crate::store::StoredWorkflow;

pub fn definition_input_from_proto(definition: pb::WorkflowDefinition) -> WorkflowDefinitionInput {
    WorkflowDefinitionInput {
        name: definition.name,
        description: definition.description,
        tasks: definition
            .tasks
            .into_iter()
            .map(|task| TaskDefinitionInput {
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
            })
            .collect(),
    }
}

/// The wire form of a definition. Numbers out of the wire type's range are
/// clamped to it, which validation then rejects with the range in the message.
pub fn definition_input_to_proto(input: &WorkflowDefinitionInput) -> pb::WorkflowDefinition {
    pb::WorkflowDefinition {
        name: input.name.clone(),
        description: input.description.clone(),
        tasks: input
            .tasks
            .iter()
            .map(|task| pb::TaskDefinition {
                id: task.id.clone(),
                dependencies: task.dependencies.clone(),
                retry_attempts: task
                    .retry_attempts
                    .map(|n| i32::try_from(n).unwrap_or(if n < 0 { i32::MIN } else { i32::MAX })),
                retry_delay_ms: task.retry_delay_ms,
                retry_backoff: task.retry_backoff.clone(),
                retry_max_delay_ms: task.retry_max_delay_ms,
                retry_jitter: task.retry_jitter,
                timeout_ms: task.timeout_ms,
                trigger_rule: task.trigger_rule.clone(),
                handler: task.handler.clone(),
            })
            .collect(),
    }
}

pub fn workflow_to_proto(workflow: &StoredWorkflow) -> pb::Workflow {
    pb::Workflow {
        definition: Some(definition_input_to_proto(&WorkflowDefinitionInput::from(
            &workflow.spec,
        ))),
        version: workflow.version.clone(),
        sequence: workflow.sequence,
        created_at: Some(timestamp_from_unix_ms(workflow.created_at_ms)),
        latest: workflow.latest,
    }
}

/// Page tokens are opaque to clients: the last key of the previous page,
/// base64-encoded so nobody mistakes them for a name to edit.
pub fn encode_page_token(last_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_key)
}

pub fn decode_page_token(token: &str) -> Result<Option<String>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map(Some)
        .ok_or_else(|| ApiError::InvalidArgument(format!("invalid page_token {token:?}")))
}

/// Page size: 0 means 100; above 1000 means 1000.
pub fn page_size(requested: u32) -> u32 {
    match requested {
        0 => 100,
        n => n.min(1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let token = encode_page_token("workflow-7");
        assert_eq!(
            decode_page_token(&token).expect("decodes").as_deref(),
            Some("workflow-7")
        );
        assert_eq!(decode_page_token("").expect("empty is first page"), None);
        assert!(decode_page_token("!!!").is_err());
    }

    #[test]
    fn page_size_defaults_and_caps() {
        assert_eq!(page_size(0), 100);
        assert_eq!(page_size(7), 7);
        assert_eq!(page_size(5000), 1000);
    }

    #[test]
    fn out_of_range_retry_attempts_survive_as_out_of_range() {
        let input = WorkflowDefinitionInput {
            name: "w".into(),
            description: String::new(),
            tasks: vec![TaskDefinitionInput {
                id: "a".into(),
                retry_attempts: Some(-5_000_000_000),
                ..TaskDefinitionInput::default()
            }],
        };
        let proto = definition_input_to_proto(&input);
        assert_eq!(proto.tasks[0].retry_attempts, Some(i32::MIN));
    }
}
