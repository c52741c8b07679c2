//! Hostile input answered right, over real sockets: errors never echo
//! unbounded input (a megabyte id, a cycle through thousands of tasks),
//! bytes that are not protobuf or not UTF-8 are INVALID_ARGUMENT, an
//! oversize message is RESOURCE_EXHAUSTED, and two namespace headers are
//! INVALID_ARGUMENT. Each row of `docs/security.md`'s tables names its test
//! here.

use std::process::Output;

use bytes::{Buf, BufMut};
use serde_json::json;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tributary_e2e::{Namespace, TestServer};
use tributary_proto::v1 as pb;
use tributary_proto::v1::run_service_client::RunServiceClient;
use tributary_proto::v1::workflow_service_client::WorkflowServiceClient;

/// What a status message may cost: far below the few kilobytes at which
/// clients refuse a header, far above any message about valid input.
const BOUNDED: usize = 2048;

const MEGABYTE: usize = 1024 * 1024;

fn assert_bounded(status: &tonic::Status, code: Code) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().len() <= BOUNDED,
        "a {} byte message: {}…",
        status.message().len(),
        &status.message()[..200]
    );
}

#[tokio::test]
async fn a_megabyte_id_is_refused_with_a_bounded_message() {
    let server = TestServer::start().await;
    let long_id = "a".repeat(MEGABYTE);

    let status = server
        .workflow_client("default")
        .await
        .register_workflow(pb::RegisterWorkflowRequest {
            definition: Some(pb::WorkflowDefinition {
                name: "w".to_owned(),
                tasks: vec![pb::TaskDefinition {
                    id: long_id.clone(),
                    ..pb::TaskDefinition::default()
                }],
                ..pb::WorkflowDefinition::default()
            }),
        })
        .await
        .expect_err("refused");
    assert_bounded(&status, Code::InvalidArgument);
    assert!(
        status.message().starts_with("invalid task id \"aaaa"),
        "{}",
        &status.message()[..100]
    );
    assert!(status.message().contains("…(1048576 bytes)"));

    let status = server
        .run_client("default")
        .await
        .get_run(pb::GetRunRequest {
            run_id: long_id.clone(),
            omit_contexts: false,
            ..Default::default()
        })
        .await
        .expect_err("no such run");
    assert_bounded(&status, Code::NotFound);

    let status = server
        .workflow_client("default")
        .await
        .get_workflow(pb::GetWorkflowRequest {
            name: long_id.clone(),
            selector: None,
        })
        .await
        .expect_err("no such workflow");
    assert_bounded(&status, Code::NotFound);

    let status = server
        .run_client("default")
        .await
        .start_run(pb::StartRunRequest {
            workflow_name: long_id,
            input_context_json: "{}".to_owned(),
            ..pb::StartRunRequest::default()
        })
        .await
        .expect_err("no such workflow");
    assert_bounded(&status, Code::NotFound);
    server.stop().await;
}

/// A workflow whose 3,000 tasks form one cycle.
fn cycle_of(tasks: usize) -> serde_json::Value {
    let tasks: Vec<serde_json::Value> = (0..tasks)
        .map(|n| {
            let previous = (n + tasks - 1) % tasks;
            json!({"id": format!("task_{n:05}"), "dependencies": [format!("task_{previous:05}")]})
        })
        .collect();
    json!({"name": "loop", "tasks": tasks})
}

#[tokio::test]
async fn a_cycle_through_thousands_of_tasks_is_listed_in_part() {
    let server = TestServer::start().await;
    let definition: tributary_core::WorkflowDefinition =
        serde_json::from_value(cycle_of(3_000)).expect("definition format");
    let status = server
        .workflow_client("default")
        .await
        .register_workflow(pb::RegisterWorkflowRequest {
            definition: Some(pb::WorkflowDefinition::from(&definition)),
        })
        .await
        .expect_err("a cycle is refused");
    assert_bounded(&status, Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("cycle detected: task_00000 -> task_00001 -> "),
        "{}",
        status.message()
    );
    assert!(
        status
            .message()
            .ends_with("-> … 2984 more tasks … -> task_00000 (3000 tasks in the cycle)"),
        "{}",
        status.message()
    );
    server.stop().await;
}

async fn tributary(arguments: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_test_server"))
        .args(arguments)
        .output()
        .await
        .expect("the CLI runs")
}

/// The CLI validates a definition before sending it, and the server checks
/// it again; either way the message it prints is bounded, never the
/// protocol error a too-large header used to cause.
#[tokio::test]
async fn the_cli_prints_a_bounded_error_for_a_megabyte_id_and_a_long_cycle() {
    let server = TestServer::start().await;
    let url = server.url();
    let directory = tempfile::tempdir().expect("temporary directory");
    let long_id = directory.path().join("long_id.json");
    std::fs::write(
        &long_id,
        json!({"name": "w", "tasks": [{"id": "a".repeat(MEGABYTE)}]}).to_string(),
    )
    .expect("write");
    let cycle = directory.path().join("cycle.json");
    std::fs::write(&cycle, cycle_of(3_000).to_string()).expect("write");

    for (file, expected) in [
        (&long_id, "invalid task id \"aaaa"),
        (&cycle, "(3000 tasks in the cycle)"),
    ] {
        let file = file.to_str().expect("UTF-8 path");
        let output = tributary(&["workflow", "register", file, "--server", &url]).await;
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.len() <= BOUNDED, "{} bytes of stderr", stderr.len());
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("protocol error"), "{stderr}");
    }
    server.stop().await;
}

#[tokio::test]
async fn two_namespace_headers_are_invalid_argument() {
    let server = TestServer::start().await;
    let mut request = tonic::Request::new(pb::ListWorkflowsRequest::default());
    let metadata = request.metadata_mut();
    metadata.append(
        "x-tributary-namespace",
        MetadataValue::from_static("team-a"),
    );
    metadata.append(
        "x-tributary-namespace",
        MetadataValue::from_static("team-b"),
    );
    let status = WorkflowServiceClient::new(server.channel().await)
        .list_workflows(request)
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "x-tributary-namespace metadata is given more than once; give one namespace"
    );
    server.stop().await;
}

/// Sends and receives raw message bytes, so a test can send what no
/// generated client would.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, buffer: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buffer.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, buffer: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let bytes = buffer.copy_to_bytes(buffer.remaining());
        Ok(Some(bytes.to_vec()))
    }
}

async fn raw_call(channel: Channel, path: &'static str, body: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .expect_err("refused")
}

#[tokio::test]
async fn bytes_that_are_not_protobuf_or_not_utf8_are_invalid_argument() {
    let server = TestServer::start().await;
    // Field 1 (run_id, a string) holding the byte 0xFF, which is not UTF-8.
    let not_utf8 = vec![0x0a, 0x01, 0xff];
    // Field 1 announcing five bytes and ending after one.
    let truncated = vec![0x0a, 0x05, b'a'];
    // A field number 0 with wire type 7: not a protobuf tag at all.
    let no_tag = vec![0x07, 0x00];
    for body in [not_utf8, truncated, no_tag] {
        let status = raw_call(
            server.channel().await,
            "/tributary.v1.RunService/GetRun",
            body.clone(),
        )
        .await;
        assert_eq!(status.code(), Code::InvalidArgument, "{body:?}: {status:?}");
        assert!(
            status
                .message()
                .starts_with("the message is not valid protobuf of its type"),
            "{status:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_message_over_the_limit_is_resource_exhausted_naming_the_sizes() {
    let server = TestServer::start().await;
    let limit = server.config.max_message_bytes();
    let input = format!("{{\"big\": \"{}\"}}", "x".repeat(limit));
    let status =
        RunServiceClient::with_interceptor(server.channel().await, Namespace::new("default"))
            .start_run(pb::StartRunRequest {
                workflow_name: "w".to_owned(),
                input_context_json: input,
                ..pb::StartRunRequest::default()
            })
            .await
            .expect_err("refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains(&format!(
            "over the server's message limit of {limit} bytes by"
        )),
        "{status:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn bytes_that_are_not_protobuf_end_an_executor_stream_with_invalid_argument() {
    use prost::Message;
    let server = TestServer::start().await;
    let register = pb::ConnectRequest {
        message: Some(pb::connect_request::Message::Register(
            tributary_e2e::scripted::registration("raw", &["h"], 1),
        )),
    }
    .encode_to_vec();
    // Field 4 (`completed`) announcing five bytes and ending after one.
    let truncated = vec![0x22, 0x05, 0x01];
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender.send(register).await.expect("queue register");
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.expect("ready");
    let mut responses = grpc
        .streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver)),
            http::uri::PathAndQuery::from_static("/tributary.v1.ExecutorService/Connect"),
            RawCodec,
        )
        .await
        .expect("stream opens")
        .into_inner();
    let registered = responses
        .message()
        .await
        .expect("answer")
        .expect("a message");
    let registered = pb::ConnectResponse::decode(registered.as_slice()).expect("protobuf");
    assert!(matches!(
        registered.message,
        Some(pb::connect_response::Message::Registered(_))
    ));
    sender.send(truncated).await.expect("queue garbage");
    let status = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(20), responses.message())
            .await
            .expect("the stream ends")
        {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended with OK"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("the message is not valid protobuf of its type"),
        "{status:?}"
    );
    server.stop().await;
}
