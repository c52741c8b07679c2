//! API keys over real sockets: every role against a call of each kind, the
//! namespace bound to the key, missing, unknown, expired and revoked keys,
//! streams closed by a revocation, keys that survive a restart, and the
//! zero-configuration start on loopback.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;
use tributary_e2e::security::{
    BOOTSTRAP_KEY, Bearer, create_key, create_key_expiring, key_id_of, start_with_keys,
};
use tributary_e2e::{TestServer, context};
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_request::Message as ToServer;
use tributary_proto::v1::connect_response::Message as FromServer;
use tributary_proto::v1::executor_service_client::ExecutorServiceClient;
use tributary_proto::v1::key_service_client::KeyServiceClient;
use tributary_proto::v1::run_service_client::RunServiceClient;
use tributary_proto::v1::workflow_service_client::WorkflowServiceClient;

const LIMIT: Duration = Duration::from_secs(20);

fn definition(name: &str, handler: Option<&str>) -> pb::WorkflowDefinition {
    pb::WorkflowDefinition {
        name: name.to_owned(),
        description: String::new(),
        tasks: vec![pb::TaskDefinition {
            id: "a".to_owned(),
            handler: handler.unwrap_or_default().to_owned(),
            ..Default::default()
        }],
        concurrency: None,
    }
}

async fn register(channel: Channel, bearer: Bearer, name: &str) -> Result<pb::Workflow, Code> {
    WorkflowServiceClient::with_interceptor(channel, bearer)
        .register_workflow(pb::RegisterWorkflowRequest {
            definition: Some(definition(name, None)),
        })
        .await
        .map(|response| response.into_inner().workflow.expect("workflow"))
        .map_err(|status| status.code())
}

async fn start_run(channel: Channel, bearer: Bearer, workflow: &str) -> Result<String, Code> {
    RunServiceClient::with_interceptor(channel, bearer)
        .start_run(pb::StartRunRequest {
            workflow_name: workflow.to_owned(),
            input_context_json: r#"{"db_password": "hunter2"}"#.to_owned(),
            ..Default::default()
        })
        .await
        .map(|response| response.into_inner().run_id)
        .map_err(|status| status.code())
}

/// Opens an executor stream and waits for `Registered`; the stream's
/// sender and response stream stay open for the caller.
async fn connect_executor(
    channel: Channel,
    bearer: Bearer,
    handler: &str,
) -> Result<
    (
        mpsc::Sender<pb::ConnectRequest>,
        tonic::Streaming<pb::ConnectResponse>,
    ),
    tonic::Status,
> {
    let (sender, receiver) = mpsc::channel(16);
    sender
        .send(pb::ConnectRequest {
            message: Some(ToServer::Register(pb::Register {
                name: "test".to_owned(),
                instance_id: uuid::Uuid::now_v7().to_string(),
                handlers: vec![handler.to_owned()],
                max_concurrent_attempts: 4,
                ..Default::default()
            })),
        })
        .await
        .expect("queue register");
    let mut responses = ExecutorServiceClient::with_interceptor(channel, bearer)
        .connect(ReceiverStream::new(receiver))
        .await?
        .into_inner();
    match responses.message().await? {
        Some(pb::ConnectResponse {
            message: Some(FromServer::Registered(_)),
        }) => Ok((sender, responses)),
        other => panic!("expected registered, got {other:?}"),
    }
}

async fn get_run(server: &TestServer, bearer: Bearer, run_id: &str) -> pb::Run {
    RunServiceClient::with_interceptor(server.channel().await, bearer)
        .get_run(pb::GetRunRequest {
            run_id: run_id.to_owned(),
            omit_contexts: false,
            ..Default::default()
        })
        .await
        .expect("get run")
        .into_inner()
        .run
        .expect("run")
}

async fn wait_for_end(server: &TestServer, bearer: Bearer, run_id: &str) -> pb::Run {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let run = get_run(server, bearer.clone(), run_id).await;
        let ended = [
            pb::RunStatus::Succeeded,
            pb::RunStatus::Failed,
            pb::RunStatus::Cancelled,
        ]
        .iter()
        .any(|status| *status as i32 == run.status);
        if ended {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run did not end: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next message of a stream, within the test's limit.
async fn next<T>(stream: &mut tonic::Streaming<T>) -> Result<Option<T>, tonic::Status> {
    tokio::time::timeout(LIMIT, stream.message())
        .await
        .expect("the stream answers in time")
}

/// One call of each kind, with the code it ended with (`Ok` when it did
/// not fail).
async fn codes_of_each_kind(
    server: &TestServer,
    key: &str,
    run_id: &str,
) -> Vec<(&'static str, Code)> {
    let bearer = Bearer::new(Some(key));
    let code = |result: Result<(), tonic::Status>| match result {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    };
    let mut codes = Vec::new();
    codes.push((
        "RegisterWorkflow",
        code(
            register(server.channel().await, bearer.clone(), "mine")
                .await
                .map(|_| ())
                .map_err(|code| tonic::Status::new(code, "")),
        ),
    ));
    codes.push((
        "StartRun",
        code(
            start_run(server.channel().await, bearer.clone(), "shared")
                .await
                .map(|_| ())
                .map_err(|code| tonic::Status::new(code, "")),
        ),
    ));
    let mut runs = RunServiceClient::with_interceptor(server.channel().await, bearer.clone());
    codes.push((
        "GetRun",
        code(
            runs.get_run(pb::GetRunRequest {
                run_id: run_id.to_owned(),
                omit_contexts: false,
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
    ));
    codes.push((
        "ListRuns",
        code(
            runs.list_runs(pb::ListRunsRequest::default())
                .await
                .map(|_| ()),
        ),
    ));
    codes.push((
        "WatchRun",
        code(
            runs.watch_run(pb::WatchRunRequest {
                run_id: run_id.to_owned(),
                after_sequence: 0,
            })
            .await
            .map(|_| ()),
        ),
    ));
    codes.push((
        "CancelRun",
        code(
            runs.cancel_run(pb::CancelRunRequest {
                run_id: run_id.to_owned(),
            })
            .await
            .map(|_| ()),
        ),
    ));
    codes.push((
        "Connect",
        code(
            connect_executor(server.channel().await, bearer.clone(), "shared.a")
                .await
                .map(|_| ()),
        ),
    ));
    codes.push((
        "ListExecutors",
        code(
            ExecutorServiceClient::with_interceptor(server.channel().await, bearer.clone())
                .list_executors(pb::ListExecutorsRequest::default())
                .await
                .map(|_| ()),
        ),
    ));
    codes.push((
        "ListKeys",
        code(
            KeyServiceClient::with_interceptor(server.channel().await, bearer)
                .list_keys(pb::ListKeysRequest::default())
                .await
                .map(|_| ()),
        ),
    ));
    codes
}

#[tokio::test]
async fn each_role_makes_exactly_its_calls() {
    let server = start_with_keys().await;
    let bootstrap = Bearer::new(Some(BOOTSTRAP_KEY)).in_namespace("finance");
    register(server.channel().await, bootstrap.clone(), "shared")
        .await
        .expect("the bootstrap key registers");

    let allowed: &[(&str, &[&str])] = &[
        (
            "admin",
            &[
                "RegisterWorkflow",
                "StartRun",
                "GetRun",
                "ListRuns",
                "WatchRun",
                "CancelRun",
                "Connect",
                "ListExecutors",
                "ListKeys",
            ],
        ),
        (
            "client",
            &[
                "RegisterWorkflow",
                "StartRun",
                "GetRun",
                "ListRuns",
                "WatchRun",
                "CancelRun",
                "ListExecutors",
            ],
        ),
        ("executor", &["Connect"]),
        (
            "viewer",
            &["GetRun", "ListRuns", "WatchRun", "ListExecutors"],
        ),
    ];
    for (role, calls) in allowed {
        // A run of its own, so that its cancellation is the first.
        let run_id = start_run(server.channel().await, bootstrap.clone(), "shared")
            .await
            .expect("the bootstrap key starts a run");
        let key = create_key(server.channel().await, BOOTSTRAP_KEY, "finance", role).await;
        for (call, code) in codes_of_each_kind(&server, &key, &run_id).await {
            if calls.contains(&call) {
                assert_eq!(code, Code::Ok, "a {role} key calling {call}");
            } else {
                assert_eq!(code, Code::PermissionDenied, "a {role} key calling {call}");
            }
        }
    }
}

#[tokio::test]
async fn missing_unknown_and_malformed_keys_are_unauthenticated_and_health_stays_open() {
    let server = start_with_keys().await;
    let client_key = create_key(server.channel().await, BOOTSTRAP_KEY, "default", "client").await;
    let key_id = key_id_of(&client_key);
    let cases = [
        ("no key", Bearer::new(None)),
        ("an unknown secret", Bearer::new(Some("not-a-key-at-all"))),
        (
            "an unknown key id",
            Bearer::new(Some(&format!(
                "trb_{}_{}",
                uuid::Uuid::now_v7().hyphenated(),
                "x".repeat(43)
            ))),
        ),
        (
            "a known id with a wrong secret",
            Bearer::new(Some(&format!("trb_{key_id}_{}", "x".repeat(43)))),
        ),
        (
            "another scheme",
            Bearer::raw(&format!("Basic {client_key}")),
        ),
        ("an empty bearer", Bearer::raw("Bearer ")),
    ];
    for (case, bearer) in cases {
        let status = RunServiceClient::with_interceptor(server.channel().await, bearer)
            .list_runs(pb::ListRunsRequest::default())
            .await
            .expect_err(case);
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
        assert!(
            !status.message().contains(&client_key) && status.message().len() < 200,
            "{case}: the answer echoes no secret: {}",
            status.message()
        );
    }
    // An anonymous executor cannot open the stream that carries tasks.
    let status = connect_executor(server.channel().await, Bearer::new(None), "finance.pay")
        .await
        .expect_err("an anonymous executor");
    assert_eq!(status.code(), Code::Unauthenticated);
    let health = tonic_health::pb::health_client::HealthClient::new(server.channel().await)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health needs no key")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            server.channel().await,
        );
    let (sender, receiver) = mpsc::channel(1);
    sender
        .send(tonic_reflection::pb::v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                    String::new(),
                ),
            ),
        })
        .await
        .expect("queue");
    let status = reflection
        .server_reflection_info(ReceiverStream::new(receiver))
        .await
        .expect_err("reflection needs a key");
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn the_namespace_comes_from_the_key_and_another_one_is_permission_denied() {
    let server = start_with_keys().await;
    let finance = create_key(server.channel().await, BOOTSTRAP_KEY, "finance", "client").await;
    let other = create_key(server.channel().await, BOOTSTRAP_KEY, "other", "viewer").await;

    // No namespace metadata: the key's namespace.
    register(
        server.channel().await,
        Bearer::new(Some(&finance)),
        "payroll",
    )
    .await
    .expect("registers in finance");
    let run_id = start_run(
        server.channel().await,
        Bearer::new(Some(&finance)),
        "payroll",
    )
    .await
    .expect("starts in finance");
    // Naming its own namespace is fine; naming another is refused.
    register(
        server.channel().await,
        Bearer::new(Some(&finance)).in_namespace("finance"),
        "payroll",
    )
    .await
    .expect("its own namespace");
    for named in ["default", "other", "NOT VALID"] {
        let status = RunServiceClient::with_interceptor(
            server.channel().await,
            Bearer::new(Some(&finance)).in_namespace(named),
        )
        .get_run(pb::GetRunRequest {
            run_id: run_id.clone(),
            omit_contexts: false,
            ..Default::default()
        })
        .await
        .expect_err(named);
        assert_eq!(status.code(), Code::PermissionDenied, "{named}");
        assert!(status.message().contains("finance"), "{}", status.message());
    }
    // An executor key of another namespace cannot serve finance's tasks.
    let other_executor =
        create_key(server.channel().await, BOOTSTRAP_KEY, "other", "executor").await;
    let status = connect_executor(
        server.channel().await,
        Bearer::new(Some(&other_executor)).in_namespace("finance"),
        "payroll.a",
    )
    .await
    .expect_err("another namespace's executor");
    assert_eq!(status.code(), Code::PermissionDenied);
    // A key of another namespace does not see the run at all.
    let status =
        RunServiceClient::with_interceptor(server.channel().await, Bearer::new(Some(&other)))
            .get_run(pb::GetRunRequest {
                run_id: run_id.clone(),
                omit_contexts: false,
                ..Default::default()
            })
            .await
            .expect_err("another namespace");
    assert_eq!(status.code(), Code::NotFound);
    // The run really is in finance, with its input.
    let run = get_run(
        &server,
        Bearer::new(Some(BOOTSTRAP_KEY)).in_namespace("finance"),
        &run_id,
    )
    .await;
    assert_eq!(context(&run)["db_password"], "hunter2");
}

#[tokio::test]
async fn admins_of_a_namespace_manage_only_its_keys() {
    let server = start_with_keys().await;
    let finance_admin = create_key(server.channel().await, BOOTSTRAP_KEY, "finance", "admin").await;
    let other_viewer = create_key(server.channel().await, BOOTSTRAP_KEY, "other", "viewer").await;
    let mut keys = KeyServiceClient::with_interceptor(
        server.channel().await,
        Bearer::new(Some(&finance_admin)),
    );
    let status = keys
        .create_key(pb::CreateKeyRequest {
            namespace: "other".to_owned(),
            role: "client".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("another namespace's key");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = keys
        .create_key(pb::CreateKeyRequest {
            namespace: "*".to_owned(),
            role: "admin".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("an admin of every namespace");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = keys
        .create_key(pb::CreateKeyRequest {
            namespace: "finance".to_owned(),
            role: "root".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("an unknown role");
    assert_eq!(status.code(), Code::InvalidArgument);
    let created = keys
        .create_key(pb::CreateKeyRequest {
            namespace: "finance".to_owned(),
            role: "executor".to_owned(),
            label: "payroll workers".to_owned(),
            expires_at: None,
        })
        .await
        .expect("its own namespace")
        .into_inner();
    assert!(created.secret.starts_with("trb_"));
    let listed = keys
        .list_keys(pb::ListKeysRequest::default())
        .await
        .expect("list")
        .into_inner()
        .keys;
    assert!(
        listed.iter().all(|key| key.namespace == "finance"),
        "{listed:?}"
    );
    assert_eq!(listed.len(), 2, "the admin key and the executor key");
    assert!(
        listed
            .iter()
            .any(|key| key.label == "payroll workers" && key.role == "executor")
    );
    let status = keys
        .revoke_key(pb::RevokeKeyRequest {
            key_id: key_id_of(&other_viewer),
        })
        .await
        .expect_err("another namespace's key");
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn an_expired_key_is_refused_and_its_watch_ends() {
    let server = start_with_keys().await;
    let expires_at_ms = tributary_server::clock::now_unix_ms() + 1_500;
    let key = create_key_expiring(
        server.channel().await,
        BOOTSTRAP_KEY,
        "default",
        "viewer",
        Some(expires_at_ms),
    )
    .await;
    let mut runs =
        RunServiceClient::with_interceptor(server.channel().await, Bearer::new(Some(&key)));
    let mut watch = runs
        .watch_events(pb::WatchEventsRequest::default())
        .await
        .expect("works before it expires")
        .into_inner();
    let status = next(&mut watch)
        .await
        .expect_err("the watch ends at expiry");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(tributary_server::clock::now_unix_ms() >= expires_at_ms);
    let status = runs
        .list_runs(pb::ListRunsRequest::default())
        .await
        .expect_err("expired");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{}", status.message());
}

#[tokio::test]
async fn revoking_a_key_closes_its_executor_stream_and_watches_at_once() {
    let server = start_with_keys().await;
    let admin = Bearer::new(Some(BOOTSTRAP_KEY));
    WorkflowServiceClient::with_interceptor(server.channel().await, admin.clone())
        .register_workflow(pb::RegisterWorkflowRequest {
            definition: Some(definition("payroll", Some("payroll.pay"))),
        })
        .await
        .expect("register");
    let thief = create_key(server.channel().await, BOOTSTRAP_KEY, "default", "executor").await;
    let honest = create_key(server.channel().await, BOOTSTRAP_KEY, "default", "executor").await;
    let watcher = create_key(server.channel().await, BOOTSTRAP_KEY, "default", "viewer").await;

    let (_thief_sender, mut thief_stream) = connect_executor(
        server.channel().await,
        Bearer::new(Some(&thief)),
        "payroll.pay",
    )
    .await
    .expect("the executor key connects");
    let mut watch =
        RunServiceClient::with_interceptor(server.channel().await, Bearer::new(Some(&watcher)))
            .watch_events(pb::WatchEventsRequest::default())
            .await
            .expect("the viewer watches")
            .into_inner();
    let run_id = start_run(server.channel().await, admin.clone(), "payroll")
        .await
        .expect("start");
    // The first executor gets the attempt.
    let assigned = loop {
        match next(&mut thief_stream).await.expect("stream") {
            Some(pb::ConnectResponse {
                message: Some(FromServer::Assign(assign)),
            }) => break assign,
            Some(_) => continue,
            None => panic!("the stream ended"),
        }
    };
    assert_eq!(assigned.run_id, run_id);

    let mut keys = KeyServiceClient::with_interceptor(server.channel().await, admin.clone());
    for key in [&thief, &watcher] {
        keys.revoke_key(pb::RevokeKeyRequest {
            key_id: key_id_of(key),
        })
        .await
        .expect("revoke");
    }
    // Both streams end with UNAUTHENTICATED (skipping what was in flight).
    let end = loop {
        match next(&mut thief_stream).await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the executor stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), Code::Unauthenticated, "{end:?}");
    assert!(end.message().contains("revoked"), "{}", end.message());
    let end = loop {
        match next(&mut watch).await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the watch ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), Code::Unauthenticated, "{end:?}");
    // The revoked key cannot come back.
    let status = connect_executor(
        server.channel().await,
        Bearer::new(Some(&thief)),
        "payroll.pay",
    )
    .await
    .expect_err("revoked");
    assert_eq!(status.code(), Code::Unauthenticated);

    // The attempt went back to the queue: the honest executor gets it and
    // finishes the run.
    let (honest_sender, mut honest_stream) = connect_executor(
        server.channel().await,
        Bearer::new(Some(&honest)),
        "payroll.pay",
    )
    .await
    .expect("the honest executor connects");
    let assigned = loop {
        match next(&mut honest_stream).await.expect("stream") {
            Some(pb::ConnectResponse {
                message: Some(FromServer::Assign(assign)),
            }) => break assign,
            Some(_) => continue,
            None => panic!("the stream ended"),
        }
    };
    assert_eq!(assigned.run_id, run_id);
    honest_sender
        .send(pb::ConnectRequest {
            message: Some(ToServer::Completed(pb::Completed {
                attempt_id: assigned.attempt_id.clone(),
                set_json: r#"{"paid": true}"#.to_owned(),
                ..Default::default()
            })),
        })
        .await
        .expect("send");
    let run = wait_for_end(&server, admin.clone(), &run_id).await;
    assert_eq!(run.status, pb::RunStatus::Succeeded as i32);
    assert_eq!(context(&run)["paid"], true);
    let executors = ExecutorServiceClient::with_interceptor(server.channel().await, admin)
        .list_executors(pb::ListExecutorsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .executors;
    assert_eq!(executors.len(), 1, "only the honest executor is connected");
}

#[tokio::test]
async fn keys_survive_a_restart_and_revoking_the_last_one_does_not_open_the_server() {
    let server = start_with_keys().await;
    let client = create_key(server.channel().await, BOOTSTRAP_KEY, "default", "client").await;
    let revoked = create_key(server.channel().await, BOOTSTRAP_KEY, "default", "viewer").await;
    KeyServiceClient::with_interceptor(server.channel().await, Bearer::new(Some(BOOTSTRAP_KEY)))
        .revoke_key(pb::RevokeKeyRequest {
            key_id: key_id_of(&revoked),
        })
        .await
        .expect("revoke");
    // Restarted without the bootstrap key: the stored keys keep keys on.
    let database = server.stop().await;
    let server = TestServer::start_on(database, |_| {}).await;
    let list = |key: Option<String>| {
        let server = &server;
        async move {
            RunServiceClient::with_interceptor(server.channel().await, Bearer::new(key.as_deref()))
                .list_runs(pb::ListRunsRequest::default())
                .await
                .map(|_| ())
                .map_err(|status| status.code())
        }
    };
    assert_eq!(list(Some(client.clone())).await, Ok(()));
    assert_eq!(list(Some(revoked)).await, Err(Code::Unauthenticated));
    assert_eq!(list(None).await, Err(Code::Unauthenticated));
    assert_eq!(
        list(Some(BOOTSTRAP_KEY.to_owned())).await,
        Err(Code::Unauthenticated),
        "the bootstrap key lives in the configuration only"
    );
    // Revoking every key leaves the server closed, not open.
    let database = server.stop().await;
    let server = TestServer::start_on(database, |config| {
        config.security.admin_key = Some(tributary_server::security::Secret::new(BOOTSTRAP_KEY));
    })
    .await;
    KeyServiceClient::with_interceptor(server.channel().await, Bearer::new(Some(BOOTSTRAP_KEY)))
        .revoke_key(pb::RevokeKeyRequest {
            key_id: key_id_of(&client),
        })
        .await
        .expect("revoke");
    let database = server.stop().await;
    let server = TestServer::start_on(database, |_| {}).await;
    let status = RunServiceClient::with_interceptor(server.channel().await, Bearer::new(None))
        .list_runs(pb::ListRunsRequest::default())
        .await
        .expect_err("still closed");
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn loopback_without_keys_needs_none_until_the_first_key_is_created() {
    let server = TestServer::start().await;
    register(server.channel().await, Bearer::new(None), "open")
        .await
        .expect("zero configuration: no key");
    // On loopback without keys, anyone local may create the first key.
    let secret = KeyServiceClient::new(server.channel().await)
        .create_key(pb::CreateKeyRequest {
            namespace: "*".to_owned(),
            role: "admin".to_owned(),
            label: "first".to_owned(),
            expires_at: None,
        })
        .await
        .expect("first key")
        .into_inner()
        .secret;
    assert_eq!(
        register(server.channel().await, Bearer::new(None), "open")
            .await
            .err(),
        Some(Code::Unauthenticated)
    );
    register(server.channel().await, Bearer::new(Some(&secret)), "open")
        .await
        .expect("with the key");
}

#[tokio::test]
async fn a_bootstrap_key_from_a_file_works_and_a_short_one_is_refused() {
    let directory = tempfile::tempdir().expect("directory");
    let path = directory.path().join("admin.key");
    std::fs::write(&path, format!("  {BOOTSTRAP_KEY}\n")).expect("write");
    let server = TestServer::start_with(|config| {
        config.security.admin_key_file = Some(path.clone());
    })
    .await;
    register(
        server.channel().await,
        Bearer::new(Some(BOOTSTRAP_KEY)),
        "w",
    )
    .await
    .expect("the file's key");
    assert_eq!(
        register(server.channel().await, Bearer::new(None), "w")
            .await
            .err(),
        Some(Code::Unauthenticated)
    );

    let database = tributary_e2e::TestDatabase::fresh().await;
    let mut config = tributary_server::config::ServeConfig::new(
        "127.0.0.1:0".parse().expect("address"),
        database.url(),
    );
    config.security.admin_key = Some(tributary_server::security::Secret::new("short"));
    let error = tributary_server::server::start(&config)
        .await
        .err()
        .expect("a short key is refused");
    assert!(error.to_string().contains("at least 32"), "{error}");
}

/// A gRPC-Web call over HTTP/1.1, as curl or a browser makes it; returns
/// the response's head and body as text.
async fn grpc_web_call(
    address: std::net::SocketAddr,
    path: &str,
    message: &[u8],
    key: Option<&str>,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let authorization = key.map_or_else(String::new, |key| {
        format!("authorization: Bearer {key}\r\n")
    });
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n{authorization}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(&body).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut response))
        .await
        .expect("answer in time")
        .expect("read");
    String::from_utf8_lossy(&response).to_lowercase()
}

#[tokio::test]
async fn grpc_web_calls_need_a_key_too() {
    use prost::Message;
    let server = start_with_keys().await;
    let address = server.config.listen;
    let address = std::net::SocketAddr::new(
        address.ip(),
        server
            .url()
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("port"),
    );
    let cancel = pb::CancelRunRequest {
        run_id: uuid::Uuid::now_v7().to_string(),
    }
    .encode_to_vec();
    let path = "/tributary.v1.RunService/CancelRun";
    let anonymous = grpc_web_call(address, path, &cancel, None).await;
    assert!(anonymous.starts_with("http/1.1 200"), "{anonymous}");
    assert!(
        anonymous.contains("grpc-status: 16"),
        "UNAUTHENTICATED: {anonymous}"
    );
    let viewer = create_key(server.channel().await, BOOTSTRAP_KEY, "default", "viewer").await;
    let as_viewer = grpc_web_call(address, path, &cancel, Some(&viewer)).await;
    assert!(
        as_viewer.contains("grpc-status: 7"),
        "PERMISSION_DENIED: {as_viewer}"
    );
    let client = create_key(server.channel().await, BOOTSTRAP_KEY, "default", "client").await;
    let as_client = grpc_web_call(address, path, &cancel, Some(&client)).await;
    assert!(
        as_client.contains("grpc-status: 5"),
        "NOT_FOUND (the run does not exist): {as_client}"
    );
}
