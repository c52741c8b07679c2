//! OpenTelemetry traces: the real server binary exporting over OTLP/gRPC to
//! an in-process OTLP receiver. Checks a span per API call, the run's span
//! (its trace id is the run id), attempt spans parented to it, and each
//! `Assign`'s `traceparent` naming its attempt's span in the run's trace.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;
use tonic::{Request, Response, Status};
use tributary_e2e::process::ServeProcess;
use tributary_e2e::scripted::{ScriptedExecutor, registration};
use tributary_e2e::{Namespace, TestDatabase};
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_response::Message as FromServer;
use tributary_proto::v1::run_service_client::RunServiceClient;
use tributary_proto::v1::workflow_service_client::WorkflowServiceClient;

const LIMIT: Duration = Duration::from_secs(60);

/// Keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().expect("not poisoned");
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test]
async fn the_server_exports_call_run_and_attempt_spans_and_assign_carries_the_trace_context() {
    let receiver = Receiver::default();
    let otlp_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let otlp_address = otlp_listener.local_addr().expect("address");
    let otlp = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
                otlp_listener,
            )),
    );

    let database = TestDatabase::fresh().await;
    let otlp_endpoint = format!("http://{otlp_address}");
    let server = ServeProcess::start(
        env!("CARGO_BIN_EXE_test_server"),
        &database,
        &["--otlp-endpoint", &otlp_endpoint, "--log-level", "error"],
        &[("OTEL_BSP_SCHEDULE_DELAY", "50")],
        Stdio::null(),
    )
    .await;
    let channel = server.channel.clone();

    let definition: tributary_core::WorkflowDefinition = serde_json::from_value(json!({
        "name": "chain",
        "tasks": [{"id": "a"}, {"id": "b", "dependencies": ["a"]}]
    }))
    .expect("definition");
    WorkflowServiceClient::with_interceptor(channel.clone(), Namespace::new("default"))
        .register_workflow(pb::RegisterWorkflowRequest {
            definition: Some(pb::WorkflowDefinition::from(&definition)),
        })
        .await
        .expect("registers");
    let mut executor = ScriptedExecutor::connect(
        channel.clone(),
        "default",
        registration("traced", &["chain.a", "chain.b"], 1),
    )
    .await;
    let mut runs = RunServiceClient::with_interceptor(channel.clone(), Namespace::new("default"));
    let run_id = runs
        .start_run(pb::StartRunRequest {
            workflow_name: "chain".into(),
            input_context_json: "{}".into(),
            ..pb::StartRunRequest::default()
        })
        .await
        .expect("starts")
        .into_inner()
        .run_id;
    let mut assigns = Vec::new();
    while assigns.len() < 2 {
        // Acknowledgements of the results come in between.
        let message = tokio::time::timeout(LIMIT, executor.next())
            .await
            .expect("a message in time")
            .expect("the stream is open");
        if let Some(FromServer::Assign(assign)) = message {
            executor.complete(&assign.attempt_id, "{}").await;
            assigns.push(assign);
        }
    }
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let run = runs
            .get_run(pb::GetRunRequest {
                run_id: run_id.clone(),
                omit_contexts: false,
                ..Default::default()
            })
            .await
            .expect("reads")
            .into_inner()
            .run
            .expect("run");
        if run.status() == pb::RunStatus::Succeeded {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{run:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(executor);

    // A graceful stop flushes what the exporter holds.
    server.stop_gracefully().await;

    let spans = receiver.spans.lock().expect("not poisoned").clone();
    let named =
        |name: &str| -> Vec<&Span> { spans.iter().filter(|span| span.name == name).collect() };
    let run_trace = run_id.replace('-', "");
    // One span per API call, named by its method, a server span.
    for method in [
        "/tributary.v1.WorkflowService/RegisterWorkflow",
        "/tributary.v1.RunService/StartRun",
        "/tributary.v1.ExecutorService/Connect",
    ] {
        let calls = named(method);
        assert_eq!(calls.len(), 1, "{method}: {spans:#?}");
        assert_eq!(calls[0].kind, 2, "SPAN_KIND_SERVER");
    }
    assert!(!named("/tributary.v1.RunService/GetRun").is_empty());

    let run_spans = named("run chain");
    assert_eq!(run_spans.len(), 1, "{spans:#?}");
    let run_span = run_spans[0];
    assert_eq!(hex(&run_span.trace_id), run_trace);
    assert!(run_span.parent_span_id.is_empty());
    assert!(run_span.end_time_unix_nano >= run_span.start_time_unix_nano);

    for (assign, task_id) in assigns.iter().zip(["a", "b"]) {
        assert_eq!(assign.task_id, task_id);
        let attempt_spans = named(&format!("task {task_id}"));
        assert_eq!(attempt_spans.len(), 1, "{spans:#?}");
        let attempt_span = attempt_spans[0];
        assert_eq!(hex(&attempt_span.trace_id), run_trace);
        assert_eq!(attempt_span.parent_span_id, run_span.span_id);
        assert_eq!(
            assign.traceparent,
            format!("00-{run_trace}-{}-01", hex(&attempt_span.span_id))
        );
        assert!(attempt_span.start_time_unix_nano >= run_span.start_time_unix_nano);
        assert!(attempt_span.end_time_unix_nano <= run_span.end_time_unix_nano);
    }
    otlp.abort();
}
