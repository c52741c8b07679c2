//! Context values by reference: a caching executor receives the values it
//! produced or received earlier in a run as names instead of again, can
//! fetch them back, and is told when a run's values can go; a non-caching
//! executor keeps receiving whole contexts. Driven by a raw protocol
//! executor that sees every message.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tributary_e2e::{Namespace, TestServer, context};
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_request::Message as ToServer;
use tributary_proto::v1::connect_response::Message as FromServer;
use tributary_proto::v1::executor_service_client::ExecutorServiceClient;

const LIMIT: Duration = Duration::from_secs(30);

/// An executor stream the test drives message by message.
struct RawExecutor {
    outbound: mpsc::Sender<pb::ConnectRequest>,
    inbound: Streaming<pb::ConnectResponse>,
    /// Messages received while waiting for another kind.
    backlog: VecDeque<FromServer>,
    executor_id: String,
    /// Every Assign received, in order.
    assigns: Vec<pb::Assign>,
}

impl RawExecutor {
    async fn connect(
        server: &TestServer,
        instance_id: &str,
        handlers: &[&str],
        value_cache_bytes: u64,
    ) -> RawExecutor {
        let (outbound, requests) = mpsc::channel(64);
        let register = pb::Register {
            name: "raw".into(),
            instance_id: instance_id.into(),
            handlers: handlers.iter().map(|h| (*h).to_owned()).collect(),
            max_concurrent_attempts: 8,
            value_cache_bytes,
            ..pb::Register::default()
        };
        outbound
            .send(request(ToServer::Register(register)))
            .await
            .expect("queued");
        let mut client = ExecutorServiceClient::with_interceptor(
            server.channel().await,
            Namespace::new("default"),
        );
        let mut inbound = client
            .connect(ReceiverStream::new(requests))
            .await
            .expect("connects")
            .into_inner();
        let first = inbound.message().await.expect("reads").expect("a message");
        let Some(FromServer::Registered(registered)) = first.message else {
            panic!("expected registered, got {first:?}");
        };
        RawExecutor {
            outbound,
            inbound,
            backlog: VecDeque::new(),
            executor_id: registered.executor_id,
            assigns: Vec::new(),
        }
    }

    async fn send(&self, message: ToServer) {
        self.outbound.send(request(message)).await.expect("sent");
    }

    /// The first message `pick` accepts, keeping the others for later.
    async fn next<T>(&mut self, pick: impl Fn(&FromServer) -> Option<T>) -> T {
        if let Some(position) = self.backlog.iter().position(|m| pick(m).is_some()) {
            let message = self.backlog.remove(position).expect("present");
            return pick(&message).expect("picked");
        }
        loop {
            let response = tokio::time::timeout(LIMIT, self.inbound.message())
                .await
                .expect("a message in time")
                .expect("stream open")
                .expect("stream not ended");
            let message = response.message.expect("non-empty");
            if let Some(found) = pick(&message) {
                return found;
            }
            self.backlog.push_back(message);
        }
    }

    async fn next_assign(&mut self) -> pb::Assign {
        let assign = self
            .next(|m| match m {
                FromServer::Assign(assign) => Some(assign.clone()),
                _ => None,
            })
            .await;
        self.assigns.push(assign.clone());
        assign
    }

    async fn complete(&mut self, attempt_id: &str, set: serde_json::Value) {
        self.send(ToServer::Started(pb::Started {
            attempt_id: attempt_id.into(),
        }))
        .await;
        self.send(ToServer::Completed(pb::Completed {
            attempt_id: attempt_id.into(),
            set_json: set.to_string(),
            removed_keys: vec![],
        }))
        .await;
        let disposition = self
            .next(|m| match m {
                FromServer::ResultAck(ack) if ack.attempt_id == attempt_id => {
                    Some(ack.disposition())
                }
                _ => None,
            })
            .await;
        assert_eq!(disposition, pb::ResultDisposition::Accepted);
    }

    async fn forget_run(&mut self) -> String {
        self.next(|m| match m {
            FromServer::ForgetRun(forget) => Some(forget.run_id.clone()),
            _ => None,
        })
        .await
    }

    /// Everything the server sent before the answer to a heartbeat sent
    /// now: the server answers in order, so nothing sent earlier is still
    /// on its way.
    async fn drain(&mut self) -> Vec<FromServer> {
        self.send(ToServer::Heartbeat(pb::Heartbeat {})).await;
        self.next(|m| matches!(m, FromServer::HeartbeatAck(_)).then_some(()))
            .await;
        self.backlog.drain(..).collect()
    }

    /// Every value name this connection received by value.
    fn names_received(&self) -> Vec<(String, String)> {
        self.assigns
            .iter()
            .flat_map(|assign| &assign.inline_values)
            .map(|name| (name.key.clone(), name.writer_attempt_id.clone()))
            .collect()
    }
}

fn request(message: ToServer) -> pb::ConnectRequest {
    pb::ConnectRequest {
        message: Some(message),
    }
}

fn name(key: &str, writer: &str) -> pb::ValueRef {
    pb::ValueRef {
        key: key.into(),
        writer_attempt_id: writer.into(),
    }
}

fn sorted(mut refs: Vec<pb::ValueRef>) -> Vec<pb::ValueRef> {
    refs.sort_by(|a, b| (&a.key, &a.writer_attempt_id).cmp(&(&b.key, &b.writer_attempt_id)));
    refs
}

fn input_of(assign: &pb::Assign) -> serde_json::Value {
    serde_json::from_str(&assign.input_context_json).expect("input JSON")
}

async fn executor_info(server: &TestServer, executor_id: &str) -> pb::ExecutorInfo {
    let mut client =
        ExecutorServiceClient::with_interceptor(server.channel().await, Namespace::new("default"));
    client
        .list_executors(pb::ListExecutorsRequest {})
        .await
        .expect("lists")
        .into_inner()
        .executors
        .into_iter()
        .find(|executor| executor.executor_id == executor_id)
        .expect("connected")
}

/// Waits until the server has dropped a closed connection (a safety net,
/// not a timing assertion).
async fn wait_until_gone(server: &TestServer, executor_id: &str) {
    let mut client =
        ExecutorServiceClient::with_interceptor(server.channel().await, Namespace::new("default"));
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let executors = client
            .list_executors(pb::ListExecutorsRequest {})
            .await
            .expect("lists")
            .into_inner()
            .executors;
        if !executors.iter().any(|e| e.executor_id == executor_id) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{executor_id} still connected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn big_value() -> serde_json::Value {
    json!((0..200).map(|i| format!("item {i}")).collect::<Vec<_>>())
}

#[tokio::test]
async fn values_the_connection_produced_or_received_are_sent_by_reference() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "w", "tasks": [
                {"id": "a"}, {"id": "b", "dependencies": ["a"]}, {"id": "c", "dependencies": ["b"]}
            ]}),
        )
        .await;
    let mut executor = RawExecutor::connect(&server, "one", &["w.a", "w.b", "w.c"], 1 << 20).await;
    let run_id = server.start_run("default", "w", json!({"in": "x"})).await;

    let a = executor.next_assign().await;
    assert_eq!(a.input_context_json, r#"{"in":"x"}"#);
    assert_eq!(a.inline_values, [name("in", "")]);
    assert!(a.references.is_empty());
    executor
        .complete(&a.attempt_id, json!({"big": big_value()}))
        .await;

    let b = executor.next_assign().await;
    assert_eq!(b.input_context_json, "{}", "everything is already held");
    assert!(b.inline_values.is_empty());
    assert_eq!(
        sorted(b.references.clone()),
        [name("big", &a.attempt_id), name("in", "")]
    );
    executor.complete(&b.attempt_id, json!({"b": 1})).await;

    let c = executor.next_assign().await;
    assert_eq!(
        sorted(c.references.clone()),
        [
            name("b", &b.attempt_id),
            name("big", &a.attempt_id),
            name("in", "")
        ]
    );
    executor.complete(&c.attempt_id, json!({"c": 2})).await;

    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    assert_eq!(
        context(&run),
        json!({"in": "x", "big": big_value(), "b": 1, "c": 2}),
        "the stored context is unchanged by references"
    );
    assert_eq!(executor.forget_run().await, run_id);
    let info = executor_info(&server, &executor.executor_id).await;
    assert_eq!(info.values_sent_by_reference, 5);
    assert_eq!(
        info.context_bytes_sent,
        (r#"{"in":"x"}"#.len() + 2 + 2) as u64,
        "only the input and two empty objects went by value"
    );
}

#[tokio::test]
async fn no_value_is_sent_twice_to_one_connection_and_every_holder_forgets_the_run() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "w", "tasks": [
                {"id": "root"},
                {"id": "m1", "dependencies": ["root"]},
                {"id": "m2", "dependencies": ["root"]},
                {"id": "join", "dependencies": ["m1", "m2"]}
            ]}),
        )
        .await;
    let mut outer = RawExecutor::connect(&server, "outer", &["w.root", "w.join"], 1 << 20).await;
    let mut middle = RawExecutor::connect(&server, "middle", &["w.m1", "w.m2"], 1 << 20).await;
    let run_id = server.start_run("default", "w", json!({"in": 0})).await;

    let root = outer.next_assign().await;
    outer
        .complete(&root.attempt_id, json!({"p": big_value()}))
        .await;
    // Both middle tasks go out in one turn: the first carries the values,
    // the second names them.
    let first = middle.next_assign().await;
    let second = middle.next_assign().await;
    assert_eq!(
        input_of(&first),
        json!({"in": 0, "p": big_value()}),
        "{first:?}"
    );
    assert_eq!(second.input_context_json, "{}");
    assert_eq!(
        sorted(second.references.clone()),
        [name("in", ""), name("p", &root.attempt_id)]
    );
    middle
        .complete(&first.attempt_id, json!({"q1": "one"}))
        .await;
    middle
        .complete(&second.attempt_id, json!({"q2": "two"}))
        .await;

    let join = outer.next_assign().await;
    let (q1_writer, q2_writer) = if first.task_id == "m1" {
        (&first.attempt_id, &second.attempt_id)
    } else {
        (&second.attempt_id, &first.attempt_id)
    };
    assert_eq!(input_of(&join), json!({"q1": "one", "q2": "two"}));
    assert_eq!(
        sorted(join.inline_values.clone()),
        [name("q1", q1_writer), name("q2", q2_writer)]
    );
    assert_eq!(
        sorted(join.references.clone()),
        [name("in", ""), name("p", &root.attempt_id)]
    );
    outer.complete(&join.attempt_id, json!({})).await;

    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    for executor in [&outer, &middle] {
        let names = executor.names_received();
        let distinct: HashSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "a value sent twice: {names:?}");
    }
    assert_eq!(outer.forget_run().await, run_id);
    assert_eq!(middle.forget_run().await, run_id);
}

#[tokio::test]
async fn a_non_caching_executor_gets_whole_contexts_and_nothing_else() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "w", "tasks": [{"id": "a"}, {"id": "b", "dependencies": ["a"]}]}),
        )
        .await;
    let mut executor = RawExecutor::connect(&server, "plain", &["w.a", "w.b"], 0).await;
    let run_id = server.start_run("default", "w", json!({"in": "x"})).await;
    let a = executor.next_assign().await;
    executor
        .complete(&a.attempt_id, json!({"big": big_value()}))
        .await;
    let b = executor.next_assign().await;
    assert_eq!(input_of(&b), json!({"in": "x", "big": big_value()}));
    for assign in [&a, &b] {
        assert!(assign.inline_values.is_empty() && assign.references.is_empty());
    }
    executor.complete(&b.attempt_id, json!({})).await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    let rest = executor.drain().await;
    assert!(
        !rest.iter().any(|m| matches!(m, FromServer::ForgetRun(_))),
        "ForgetRun is for caching executors only: {rest:?}"
    );
    let info = executor_info(&server, &executor.executor_id).await;
    assert_eq!(info.values_sent_by_reference, 0);
    assert_eq!(
        info.context_bytes_sent,
        (a.input_context_json.len() + b.input_context_json.len()) as u64
    );
}

#[tokio::test]
async fn fetch_values_is_answered_in_the_order_asked_while_the_run_lives() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "w", "tasks": [{"id": "a"}, {"id": "b", "dependencies": ["a"]}]}),
        )
        .await;
    let mut executor = RawExecutor::connect(&server, "fetcher", &["w.a", "w.b"], 1 << 20).await;
    let run_id = server
        .start_run("default", "w", json!({"in": 12345678901234567890u64}))
        .await;
    let a = executor.next_assign().await;
    // The raw text the executor sent comes back byte for byte.
    let big_text = r#"[1, 2.50, "three"]"#;
    executor
        .send(ToServer::Started(pb::Started {
            attempt_id: a.attempt_id.clone(),
        }))
        .await;
    executor
        .send(ToServer::Completed(pb::Completed {
            attempt_id: a.attempt_id.clone(),
            set_json: format!(r#"{{"big": {big_text}}}"#),
            removed_keys: vec![],
        }))
        .await;
    let b = executor.next_assign().await;
    assert_eq!(b.references.len(), 2);
    let before = executor_info(&server, &executor.executor_id).await;
    executor
        .send(ToServer::FetchValues(pb::FetchValues {
            run_id: run_id.clone(),
            refs: vec![
                name("big", &a.attempt_id),
                name("big", "no-such-attempt"),
                name("in", ""),
            ],
        }))
        .await;
    let values = executor
        .next(|m| match m {
            FromServer::Values(values) => Some(values.clone()),
            _ => None,
        })
        .await;
    assert_eq!(values.run_id, run_id);
    let got: Vec<(pb::ValueRef, String)> = values
        .values
        .into_iter()
        .map(|value| (value.r#ref.expect("named"), value.value_json))
        .collect();
    assert_eq!(
        got,
        [
            (name("big", &a.attempt_id), big_text.to_owned()),
            (name("in", ""), "12345678901234567890".to_owned())
        ]
    );
    let after = executor_info(&server, &executor.executor_id).await;
    assert_eq!(
        after.context_bytes_sent - before.context_bytes_sent,
        (big_text.len() + "12345678901234567890".len()) as u64
    );
    executor.complete(&b.attempt_id, json!({})).await;
    server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(executor.forget_run().await, run_id);
    // Once the run is over its values are gone.
    executor
        .send(ToServer::FetchValues(pb::FetchValues {
            run_id: run_id.clone(),
            refs: vec![name("in", "")],
        }))
        .await;
    let late = executor
        .next(|m| match m {
            FromServer::Values(values) => Some(values.clone()),
            _ => None,
        })
        .await;
    assert_eq!(late.run_id, run_id);
    assert!(late.values.is_empty());
}

#[tokio::test]
async fn a_reconnected_executor_holds_nothing_and_gets_whole_values_again() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "w", "tasks": [
                {"id": "a"}, {"id": "b", "dependencies": ["a"]}, {"id": "c", "dependencies": ["b"]}
            ]}),
        )
        .await;
    let mut ends = RawExecutor::connect(&server, "ends", &["w.a", "w.c"], 1 << 20).await;
    let mut middle = RawExecutor::connect(&server, "middle", &["w.b"], 1 << 20).await;
    let run_id = server.start_run("default", "w", json!({"in": "x"})).await;
    let a = ends.next_assign().await;
    ends.complete(&a.attempt_id, json!({"big": big_value()}))
        .await;
    let b = middle.next_assign().await;
    assert_eq!(input_of(&b), json!({"in": "x", "big": big_value()}));
    // The executor of a and c reconnects while b runs.
    let old_id = ends.executor_id.clone();
    drop(ends);
    let mut ends = RawExecutor::connect(&server, "ends", &["w.a", "w.c"], 1 << 20).await;
    wait_until_gone(&server, &old_id).await;
    middle.complete(&b.attempt_id, json!({"b": true})).await;
    let c = ends.next_assign().await;
    assert!(c.references.is_empty(), "{:?}", c.references);
    assert_eq!(
        input_of(&c),
        json!({"in": "x", "big": big_value(), "b": true})
    );
    assert_eq!(
        sorted(c.inline_values.clone()),
        [
            name("b", &b.attempt_id),
            name("big", &a.attempt_id),
            name("in", "")
        ]
    );
    ends.complete(&c.attempt_id, json!({})).await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
}

#[tokio::test]
async fn a_mixed_fleet_gets_references_only_where_they_were_asked_for() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "w", "tasks": [
                {"id": "root"},
                {"id": "m1", "dependencies": ["root"]},
                {"id": "m2", "dependencies": ["root"]},
                {"id": "join", "dependencies": ["m1", "m2"]}
            ]}),
        )
        .await;
    let mut caching =
        RawExecutor::connect(&server, "caching", &["w.root", "w.join"], 1 << 20).await;
    let mut plain = RawExecutor::connect(&server, "plain", &["w.m1", "w.m2"], 0).await;
    let run_id = server.start_run("default", "w", json!({"in": 0})).await;
    let root = caching.next_assign().await;
    caching
        .complete(&root.attempt_id, json!({"p": big_value()}))
        .await;
    for _ in 0..2 {
        let middle = plain.next_assign().await;
        assert_eq!(input_of(&middle), json!({"in": 0, "p": big_value()}));
        assert!(middle.inline_values.is_empty() && middle.references.is_empty());
        let key = format!("q_{}", middle.task_id);
        plain.complete(&middle.attempt_id, json!({ key: 1 })).await;
    }
    let join = caching.next_assign().await;
    assert_eq!(input_of(&join), json!({"q_m1": 1, "q_m2": 1}));
    assert_eq!(
        sorted(join.references.clone()),
        [name("in", ""), name("p", &root.attempt_id)]
    );
    caching.complete(&join.attempt_id, json!({})).await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(
        context(&run),
        json!({"in": 0, "p": big_value(), "q_m1": 1, "q_m2": 1})
    );
    assert_eq!(caching.forget_run().await, run_id);
    let rest = plain.drain().await;
    assert!(!rest.iter().any(|m| matches!(m, FromServer::ForgetRun(_))));
    let plain_info = executor_info(&server, &plain.executor_id).await;
    assert_eq!(plain_info.values_sent_by_reference, 0);
    let caching_info = executor_info(&server, &caching.executor_id).await;
    assert_eq!(caching_info.values_sent_by_reference, 2);
}

#[tokio::test]
async fn a_run_whose_values_the_bound_evicted_is_forgotten_at_once() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "w", "tasks": [{"id": "a"}, {"id": "b", "dependencies": ["a"]}]}),
        )
        .await;
    // Room for one of the two values below (302 and 402 bytes of JSON), not
    // for both.
    let mut executor = RawExecutor::connect(&server, "small", &["w.a", "w.b"], 600).await;
    let first_run = server.start_run("default", "w", json!({})).await;
    let a1 = executor.next_assign().await;
    executor
        .complete(&a1.attempt_id, json!({"v": "1".repeat(300)}))
        .await;
    let b1 = executor.next_assign().await;
    assert_eq!(b1.references, [name("v", &a1.attempt_id)]);

    // A second run's value pushes the first run's out of the server's
    // tracking while the first run still runs: the executor is told.
    let second_run = server.start_run("default", "w", json!({})).await;
    let a2 = executor.next_assign().await;
    executor
        .complete(&a2.attempt_id, json!({"v": "2".repeat(400)}))
        .await;
    assert_eq!(executor.forget_run().await, first_run);
    let b2 = executor.next_assign().await;
    assert_eq!(b2.references, [name("v", &a2.attempt_id)]);
    executor.complete(&b2.attempt_id, json!({})).await;
    executor.complete(&b1.attempt_id, json!({})).await;
    for run_id in [&first_run, &second_run] {
        let run = server.wait_for_run("default", run_id, LIMIT).await;
        assert_eq!(run.status(), pb::RunStatus::Succeeded);
    }
    assert_eq!(executor.forget_run().await, second_run);
    let rest = executor.drain().await;
    assert!(
        !rest.iter().any(|m| matches!(m, FromServer::ForgetRun(_))),
        "the first run was forgotten once, when it was evicted: {rest:?}"
    );
    let info = executor_info(&server, &executor.executor_id).await;
    assert_eq!(info.values_sent_by_reference, 2);
}
