//! The worker's side of the executor protocol against a scripted server:
//! a server that stops acknowledging heartbeats loses the worker's attempts
//! (cancelled, reported) and gets a fresh registration that lists the
//! unacknowledged attempt and resends its result; shutdown asks for no more
//! work with `CapacityChanged { 0 }`.

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tributary::Worker;
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_request::Message as ToServer;
use tributary_proto::v1::connect_response::Message as FromServer;
use tributary_proto::v1::executor_service_server::{ExecutorService, ExecutorServiceServer};

use common::within;

type Responses = Pin<Box<dyn Stream<Item = Result<pb::ConnectResponse, Status>> + Send>>;

/// Connection 0 assigns one attempt and never acknowledges anything;
/// later connections acknowledge heartbeats and results.
struct ScriptedServer {
    connections: AtomicUsize,
    seen: mpsc::UnboundedSender<(usize, ToServer)>,
    max_message_bytes: u64,
    /// Whether connection 0 acknowledges nothing.
    silent_first: bool,
}

fn response(message: FromServer) -> Result<pb::ConnectResponse, Status> {
    Ok(pb::ConnectResponse {
        message: Some(message),
    })
}

#[tonic::async_trait]
impl ExecutorService for ScriptedServer {
    type ConnectStream = Responses;

    async fn connect(
        &self,
        request: Request<Streaming<pb::ConnectRequest>>,
    ) -> Result<Response<Responses>, Status> {
        let connection = self.connections.fetch_add(1, Ordering::SeqCst);
        let namespace = request
            .metadata()
            .get(tributary_proto::NAMESPACE_METADATA_KEY)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(namespace, "scripted");
        let mut inbound = request.into_inner();
        let (outbound, responses) = mpsc::unbounded_channel();
        let _ = outbound.send(response(FromServer::Registered(pb::Registered {
            executor_id: format!("executor-{connection}"),
            heartbeat_interval_ms: 20,
            lease_timeout_ms: 200,
            max_message_bytes: self.max_message_bytes,
            ..pb::Registered::default()
        })));
        if connection == 0 {
            let _ = outbound.send(response(FromServer::Assign(pb::Assign {
                run_id: "run".into(),
                task_id: "task".into(),
                attempt_id: "attempt-1".into(),
                attempt_number: 1,
                handler: "h".into(),
                input_context_json: "{}".into(),
                deadline: None,
                workflow_name: "w".into(),
                ..pb::Assign::default()
            })));
        }
        let seen = self.seen.clone();
        let acknowledges = connection > 0 || !self.silent_first;
        tokio::spawn(async move {
            while let Some(Ok(request)) = inbound.next().await {
                let Some(message) = request.message else {
                    continue;
                };
                if acknowledges {
                    let answer = match &message {
                        ToServer::Heartbeat(_) => {
                            Some(FromServer::HeartbeatAck(pb::HeartbeatAck {}))
                        }
                        ToServer::Completed(pb::Completed { attempt_id, .. })
                        | ToServer::Failed(pb::Failed { attempt_id, .. }) => {
                            Some(FromServer::ResultAck(pb::ResultAck {
                                attempt_id: attempt_id.clone(),
                                disposition: pb::ResultDisposition::Stale.into(),
                                reason: String::new(),
                            }))
                        }
                        _ => None,
                    };
                    if let Some(answer) = answer {
                        let _ = outbound.send(response(answer));
                    }
                }
                let _ = seen.send((connection, message));
            }
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(
            responses,
        ))))
    }

    async fn list_executors(
        &self,
        _request: Request<pb::ListExecutorsRequest>,
    ) -> Result<Response<pb::ListExecutorsResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    type WatchExecutorsStream =
        std::pin::Pin<Box<dyn Stream<Item = Result<pb::WatchExecutorsResponse, Status>> + Send>>;

    async fn watch_executors(
        &self,
        _request: Request<pb::WatchExecutorsRequest>,
    ) -> Result<Response<Self::WatchExecutorsStream>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
}

struct DropGuard(mpsc::UnboundedSender<bool>, Option<tributary::Cancellation>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        let cancelled = self
            .1
            .as_ref()
            .is_some_and(tributary::Cancellation::is_cancelled);
        let _ = self.0.send(cancelled);
    }
}

/// Starts a scripted server; returns its URL and what it receives.
async fn scripted_server(
    max_message_bytes: u64,
    silent_first: bool,
) -> (String, mpsc::UnboundedReceiver<(usize, ToServer)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let server = ScriptedServer {
        connections: AtomicUsize::new(0),
        seen: seen_tx,
        max_message_bytes,
        silent_first,
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ExecutorServiceServer::new(server))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (url, seen)
}

/// Waits for the first message of `connection` that `pick` accepts.
async fn next_matching<T>(
    seen: &mut mpsc::UnboundedReceiver<(usize, ToServer)>,
    connection: usize,
    pick: impl Fn(&ToServer) -> Option<T>,
) -> T {
    within("a message from the worker", async {
        loop {
            let (from, message) = seen.recv().await.expect("server runs");
            if from == connection
                && let Some(value) = pick(&message)
            {
                return value;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_heartbeat_acks_the_worker_cancels_reconnects_and_resends() {
    let (url, mut seen) = scripted_server(4 << 20, true).await;

    let (dropped_tx, mut dropped) = mpsc::unbounded_channel::<bool>();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let worker = Worker::builder(url)
        .namespace("scripted")
        .instance_id("instance-1")
        .capacity(2)
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .handler("h", move |context| {
            let dropped = dropped_tx.clone();
            counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let _guard = DropGuard(dropped, context.cancellation());
                std::future::pending::<()>().await;
                Ok(())
            })
        })
        .start()
        .expect("starts");

    let register = next_matching(&mut seen, 0, |message| match message {
        ToServer::Register(register) => Some(register.clone()),
        _ => None,
    })
    .await;
    assert_eq!(register.instance_id, "instance-1");
    assert_eq!(register.handlers, ["h"]);
    assert_eq!(register.max_concurrent_attempts, 2);
    assert!(register.held_attempt_ids.is_empty());
    next_matching(&mut seen, 0, |message| match message {
        ToServer::Started(started) if started.attempt_id == "attempt-1" => Some(()),
        _ => None,
    })
    .await;

    // No heartbeat is acknowledged: after the lease the attempt is cancelled.
    assert!(
        within("the attempt being dropped", dropped.recv())
            .await
            .expect("dropped"),
        "the task saw the cancellation before being dropped"
    );
    // The worker registers again, still holding the unacknowledged
    // attempt, and resends its result.
    let again = next_matching(&mut seen, 1, |message| match message {
        ToServer::Register(register) => Some(register.clone()),
        _ => None,
    })
    .await;
    assert_eq!(again.instance_id, "instance-1");
    assert_eq!(again.held_attempt_ids, ["attempt-1"]);
    let failed = next_matching(&mut seen, 1, |message| match message {
        ToServer::Failed(failed) => Some(failed.clone()),
        _ => None,
    })
    .await;
    assert_eq!(failed.attempt_id, "attempt-1");
    assert!(failed.message.contains("lease"), "{failed:?}");
    assert!(!failed.non_retryable);
    let mut status = worker.status();
    within(
        "the result being acknowledged",
        status.wait_for(|status| {
            status.connected && status.unacknowledged == 0 && status.executor_id == "executor-1"
        }),
    )
    .await
    .expect("status");

    // Shutdown asks for no more work, then ends: nothing runs.
    let report = worker.shutdown(Duration::from_secs(30)).await;
    assert!(report.drained);
    let capacity = next_matching(&mut seen, 1, |message| match message {
        ToServer::CapacityChanged(change) => Some(change.max_concurrent_attempts),
        _ => None,
    })
    .await;
    assert_eq!(capacity, 0);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the attempt ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_message_limit_becomes_a_non_retryable_failure() {
    let (url, mut seen) = scripted_server(2_000, false).await;
    let worker = Worker::builder(url)
        .namespace("scripted")
        .handler("h", |context| {
            Box::pin(async move {
                context.insert("huge", "x".repeat(10_000))?;
                Ok(())
            })
        })
        .start()
        .expect("starts");
    let failed = next_matching(&mut seen, 0, |message| match message {
        ToServer::Failed(failed) => Some(failed.clone()),
        ToServer::Completed(_) => panic!("an oversized result was sent"),
        _ => None,
    })
    .await;
    assert_eq!(failed.attempt_id, "attempt-1");
    assert!(failed.non_retryable);
    assert!(
        failed
            .message
            .contains("over the server's message limit of 2000 bytes by"),
        "{failed:?}"
    );
    let mut status = worker.status();
    within(
        "the acknowledgement",
        status.wait_for(|status| status.unacknowledged == 0 && status.registrations == 1),
    )
    .await
    .expect("status");
    worker.shutdown(Duration::from_secs(10)).await;
}
