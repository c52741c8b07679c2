//! Health, reflection and namespaces of a freshly started server.

use std::collections::BTreeSet;

use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::{v1, v1alpha};
use tributary_e2e::TestServer;

#[tokio::test]
async fn health_reports_serving_once_started() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "tributary.v1.WorkflowService"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .expect("health answers")
            .into_inner();
        assert_eq!(
            response.status(),
            ServingStatus::Serving,
            "service {service:?}"
        );
    }
    server.stop().await;
}

const EXPECTED_SERVICES: [&str; 4] = [
    "grpc.health.v1.Health",
    "tributary.v1.ExecutorService",
    "tributary.v1.RunService",
    "tributary.v1.WorkflowService",
];

#[tokio::test]
async fn reflection_v1_lists_the_services() {
    let server = TestServer::start().await;
    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let response = responses.next().await.expect("one response").expect("ok");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected reflection response: {response:?}");
    };
    let names: BTreeSet<String> = list
        .service
        .into_iter()
        .map(|service| service.name)
        .collect();
    for expected in EXPECTED_SERVICES {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn reflection_v1alpha_resolves_the_workflow_service_file() {
    let server = TestServer::start().await;
    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let requests = [
        v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        },
        v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                    "tributary.v1.WorkflowService".to_owned(),
                ),
            ),
        },
    ];
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection answers")
        .into_inner();
    let first = responses.next().await.expect("first").expect("ok");
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        first.message_response
    else {
        panic!("unexpected reflection response: {first:?}");
    };
    let names: BTreeSet<String> = list
        .service
        .into_iter()
        .map(|service| service.name)
        .collect();
    for expected in EXPECTED_SERVICES {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
    let second = responses.next().await.expect("second").expect("ok");
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        second.message_response
    else {
        panic!("unexpected reflection response: {second:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    server.stop().await;
}

/// gRPC-Web over plain HTTP/1.1, as a browser would send it.
#[tokio::test]
async fn grpc_web_answers_over_http1() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    let address = server.url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    // An empty HealthCheckRequest in one gRPC frame: flag 0, length 0.
    let body = [0u8, 0, 0, 0, 0];
    let request = format!(
        "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("writes");
    stream.write_all(&body).await.expect("writes");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("reads");
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("application/grpc-web"), "{text}");
    assert!(
        text.contains("grpc-status:0") || text.contains("grpc-status: 0"),
        "{text}"
    );
    server.stop().await;
}
