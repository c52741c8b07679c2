//! `WorkflowService` over a real socket: registration, versions, listing,
//! namespaces, and every validation error of `tests/vectors/validation.json`.

use tonic::Code;
use tributary_core::WorkflowDefinition;
use tributary_e2e::{TestServer, validation_vectors};
use tributary_proto::v1 as pb;

fn definition(json: serde_json::Value) -> pb::WorkflowDefinition {
    let input: WorkflowDefinition = serde_json::from_value(json).expect("definition format");
    pb::WorkflowDefinition::from(&input)
}

fn register_request(json: serde_json::Value) -> pb::RegisterWorkflowRequest {
    pb::RegisterWorkflowRequest {
        definition: Some(definition(json)),
    }
}

fn code_name(code: Code) -> String {
    // tonic's Debug names are CamelCase; the vectors use the gRPC names.
    let camel = format!("{code:?}");
    let mut name = String::new();
    for (index, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && index > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

#[tokio::test]
async fn every_validation_vector_gets_its_code_and_message_and_stores_nothing() {
    let server = TestServer::start().await;
    let mut client = server.workflow_client("default").await;
    let cases = validation_vectors();
    assert!(cases.len() >= 20, "the vectors cover every rule");
    for case in cases {
        let result = client
            .register_workflow(register_request(case.definition.clone()))
            .await;
        match (&case.error, result) {
            (None, Ok(response)) => {
                let response = response.into_inner();
                assert!(response.created, "{}", case.name);
            }
            (None, Err(status)) => panic!("{}: rejected: {status:?}", case.name),
            (Some(expected), Ok(_)) => panic!("{}: accepted, expected {expected:?}", case.name),
            (Some(expected), Err(status)) => {
                assert_eq!(code_name(status.code()), expected.code, "{}", case.name);
                assert_eq!(status.message(), expected.message, "{}", case.name);
            }
        }
    }
    // Only the valid cases were stored (they all use the name "w").
    let listed = client
        .list_workflows(pb::ListWorkflowsRequest::default())
        .await
        .expect("lists")
        .into_inner();
    let names: Vec<String> = listed
        .workflows
        .iter()
        .map(|w| w.definition.clone().unwrap_or_default().name)
        .collect();
    assert_eq!(names, ["w"]);
    let valid_count = validation_vectors()
        .iter()
        .filter(|c| c.error.is_none())
        .count() as u64;
    assert_eq!(listed.workflows[0].sequence, valid_count);
    server.stop().await;
}

#[tokio::test]
async fn registering_returns_server_computed_versions() {
    let server = TestServer::start().await;
    let mut client = server.workflow_client("default").await;
    let original = serde_json::json!({
        "name": "etl",
        "description": "nightly load",
        "tasks": [
            {"id": "load", "dependencies": ["extract"]},
            {"id": "extract", "retry_attempts": 2}
        ]
    });
    let first = client
        .register_workflow(register_request(original.clone()))
        .await
        .expect("registers")
        .into_inner();
    assert!(first.created);
    let workflow = first.workflow.expect("workflow");
    assert_eq!(workflow.version.len(), 16);
    assert_eq!(workflow.sequence, 1);
    assert!(workflow.latest);
    let normalized = workflow.definition.expect("definition");
    let ids: Vec<&str> = normalized.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["extract", "load"], "tasks sorted by id");
    let extract = &normalized.tasks[0];
    assert_eq!(extract.retry_attempts, Some(2));
    assert_eq!(extract.retry_delay_ms, Some(1000));
    assert_eq!(extract.retry_backoff, "exponential");
    assert_eq!(extract.retry_max_delay_ms, Some(30_000));
    assert_eq!(extract.retry_jitter, Some(true));
    assert_eq!(extract.timeout_ms, None, "server-wide default applies");
    assert_eq!(extract.trigger_rule, "all_success");
    assert_eq!(extract.handler, "etl.extract");

    // The same definition, written in another order, is the same version.
    let reordered = serde_json::json!({
        "name": "etl",
        "description": "nightly load",
        "tasks": [
            {"id": "extract", "retry_attempts": 2, "retry_backoff": "exponential"},
            {"id": "load", "dependencies": ["extract"], "handler": "etl.load"}
        ]
    });
    let again = client
        .register_workflow(register_request(reordered))
        .await
        .expect("registers")
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.workflow.expect("workflow").version, workflow.version);

    let mut changed = original.clone();
    changed["description"] = serde_json::json!("hourly load");
    let second = client
        .register_workflow(register_request(changed))
        .await
        .expect("registers")
        .into_inner();
    assert!(second.created);
    let second = second.workflow.expect("workflow");
    assert_eq!(second.sequence, 2);
    assert_ne!(second.version, workflow.version);

    // Get: latest, by version, by sequence; unknown ones are NOT_FOUND.
    let latest = client
        .get_workflow(pb::GetWorkflowRequest {
            name: "etl".into(),
            selector: None,
        })
        .await
        .expect("gets")
        .into_inner()
        .workflow
        .expect("workflow");
    assert_eq!(latest.version, second.version);
    let by_version = client
        .get_workflow(pb::GetWorkflowRequest {
            name: "etl".into(),
            selector: Some(pb::get_workflow_request::Selector::Version(
                workflow.version.clone(),
            )),
        })
        .await
        .expect("gets")
        .into_inner()
        .workflow
        .expect("workflow");
    assert_eq!(by_version.sequence, 1);
    assert!(!by_version.latest);
    let by_sequence = client
        .get_workflow(pb::GetWorkflowRequest {
            name: "etl".into(),
            selector: Some(pb::get_workflow_request::Selector::Sequence(2)),
        })
        .await
        .expect("gets")
        .into_inner()
        .workflow
        .expect("workflow");
    assert_eq!(by_sequence.version, second.version);
    let missing = client
        .get_workflow(pb::GetWorkflowRequest {
            name: "nope".into(),
            selector: None,
        })
        .await
        .expect_err("missing");
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(missing.message(), "workflow \"nope\" not found");
    server.stop().await;
}

#[tokio::test]
async fn namespaces_do_not_see_each_other() {
    let server = TestServer::start().await;
    let mut team_a = server.workflow_client("team-a").await;
    let mut team_b = server.workflow_client("team-b").await;
    team_a
        .register_workflow(register_request(
            serde_json::json!({"name": "private", "tasks": [{"id": "a"}]}),
        ))
        .await
        .expect("registers");
    let error = team_b
        .get_workflow(pb::GetWorkflowRequest {
            name: "private".into(),
            selector: None,
        })
        .await
        .expect_err("invisible");
    assert_eq!(error.code(), Code::NotFound);
    let listed = team_b
        .list_workflows(pb::ListWorkflowsRequest::default())
        .await
        .expect("lists")
        .into_inner();
    assert!(listed.workflows.is_empty());
    // Without metadata a request is in `default`, which is empty too.
    let mut default = tributary_proto::v1::workflow_service_client::WorkflowServiceClient::new(
        server.channel().await,
    );
    let listed = default
        .list_workflows(pb::ListWorkflowsRequest::default())
        .await
        .expect("lists")
        .into_inner();
    assert!(listed.workflows.is_empty());
    let listed = team_a
        .list_workflows(pb::ListWorkflowsRequest::default())
        .await
        .expect("lists")
        .into_inner();
    assert_eq!(listed.workflows.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn an_invalid_namespace_is_rejected_by_name() {
    let server = TestServer::start().await;
    let mut client = server.workflow_client("Bad Namespace").await;
    let error = client
        .list_workflows(pb::ListWorkflowsRequest::default())
        .await
        .expect_err("rejected");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("\"Bad Namespace\""),
        "{}",
        error.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn listing_pages_through_every_workflow() {
    let server = TestServer::start().await;
    let mut client = server.workflow_client("default").await;
    for index in 0..7 {
        client
            .register_workflow(register_request(serde_json::json!({
                "name": format!("flow-{index}"),
                "tasks": [{"id": "a"}]
            })))
            .await
            .expect("registers");
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_workflows(pb::ListWorkflowsRequest {
                page_size: 3,
                page_token,
            })
            .await
            .expect("lists")
            .into_inner();
        pages += 1;
        assert!(page.workflows.len() <= 3);
        seen.extend(
            page.workflows
                .into_iter()
                .map(|w| w.definition.unwrap_or_default().name),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..7).map(|index| format!("flow-{index}")).collect();
    assert_eq!(seen, expected);
    let error = client
        .list_workflows(pb::ListWorkflowsRequest {
            page_size: 3,
            page_token: "not a token!".into(),
        })
        .await
        .expect_err("bad token");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("page_token"));
    server.stop().await;
}

#[tokio::test]
async fn limits_are_configurable_and_name_the_excess() {
    let server = TestServer::start_with(|config| {
        config.max_tasks_per_workflow = 3;
        config.max_definition_bytes = 400;
    })
    .await;
    let mut client = server.workflow_client("default").await;
    let four_tasks = serde_json::json!({
        "name": "big",
        "tasks": [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}]
    });
    let error = client
        .register_workflow(register_request(four_tasks))
        .await
        .expect_err("too many tasks");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(
        error.message(),
        "workflow \"big\" has 4 tasks, over the limit of 3 by 1"
    );
    let long_description = serde_json::json!({
        "name": "wordy",
        "description": "x".repeat(500),
        "tasks": [{"id": "a"}]
    });
    let error = client
        .register_workflow(register_request(long_description))
        .await
        .expect_err("too large");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error
            .message()
            .starts_with("workflow \"wordy\" definition is 5"),
        "{}",
        error.message()
    );
    assert!(error.message().contains("over the limit of 400 bytes by"));
    let listed = client
        .list_workflows(pb::ListWorkflowsRequest::default())
        .await
        .expect("lists")
        .into_inner();
    assert!(listed.workflows.is_empty(), "nothing stored");
    server.stop().await;
}

#[tokio::test]
async fn a_request_without_a_definition_is_invalid() {
    let server = TestServer::start().await;
    let mut client = server.workflow_client("default").await;
    let error = client
        .register_workflow(pb::RegisterWorkflowRequest { definition: None })
        .await
        .expect_err("rejected");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(error.message(), "definition is missing");
    server.stop().await;
}

#[tokio::test]
async fn the_seed_example_definition_registers() {
    let server = TestServer::start().await;
    let mut client = server.workflow_client("default").await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/parallel_processing.workflow.yaml");
    let input = tributary_server::cli::read_definition_file(&path).expect("readable");
    let response = client
        .register_workflow(pb::RegisterWorkflowRequest {
            definition: Some(pb::WorkflowDefinition::from(&input)),
        })
        .await
        .expect("registers")
        .into_inner();
    let normalized = response
        .workflow
        .expect("workflow")
        .definition
        .expect("definition");
    let ids: Vec<&str> = normalized.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "cleanup",
            "combine_results",
            "generate_data",
            "generate_report",
            "partition_data",
            "process_partition_1",
            "process_partition_2",
            "process_partition_3",
            "send_notifications"
        ]
    );
    let partition = normalized
        .tasks
        .iter()
        .find(|t| t.id == "process_partition_2")
        .expect("present");
    assert_eq!(partition.retry_attempts, Some(3));
    assert_eq!(partition.retry_delay_ms, Some(1000));
    assert_eq!(partition.dependencies, ["partition_data"]);
    server.stop().await;
}
