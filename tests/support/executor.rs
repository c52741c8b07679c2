//! A small executor for tests, speaking the real protocol over gRPC: it
//! registers handlers, runs each assignment through a closure, reports the
//! outcome, and records what the server sent (cancellations, acks) and how
//! many attempts ran at once.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_request::Message as ToServer;
use tributary_proto::v1::connect_response::Message as FromServer;
use tributary_proto::v1::executor_service_client::ExecutorServiceClient;

use crate::Namespace;

/// One assignment as a handler sees it.
#[derive(Debug, Clone)]
pub struct Assigned {
    pub run_id: String,
    pub task_id: String,
    pub attempt_id: String,
    pub attempt_number: u32,
    pub handler: String,
    pub input: serde_json::Value,
    pub input_json: String,
    /// Turns true when the server cancels the attempt.
    pub cancelled: watch::Receiver<bool>,
}

/// What a handler decides.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Succeed with these writes (a JSON object) and removals.
    Complete {
        set: serde_json::Value,
        removed: Vec<String>,
    },
    /// Succeed with a raw `set_json` text, for testing bad results.
    CompleteRaw(String),
    Fail {
        message: String,
        retryable: bool,
    },
    /// Send nothing: the attempt hangs until cancelled, then reports failure.
    HangUntilCancelled,
}

impl Outcome {
    pub fn set(set: serde_json::Value) -> Outcome {
        Outcome::Complete {
            set,
            removed: Vec::new(),
        }
    }

    pub fn fail(message: &str) -> Outcome {
        Outcome::Fail {
            message: message.to_owned(),
            retryable: true,
        }
    }

    pub fn fail_for_good(message: &str) -> Outcome {
        Outcome::Fail {
            message: message.to_owned(),
            retryable: false,
        }
    }
}

pub type Handler =
    Arc<dyn Fn(Assigned) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// Wraps an async closure as a [`Handler`].
pub fn handler<F, Fut>(function: F) -> Handler
where
    F: Fn(Assigned) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    Arc::new(move |assigned| Box::pin(function(assigned)))
}

/// What the executor observed.
#[derive(Debug, Default)]
pub struct Observed {
    pub executor_id: Option<String>,
    pub cancels: Vec<String>,
    pub acks: Vec<(String, i32)>,
    pub assigned: Vec<String>,
}

pub struct TestExecutor {
    pub observed: Arc<Mutex<Observed>>,
    silent: Arc<std::sync::atomic::AtomicBool>,
    running: Arc<AtomicUsize>,
    pub max_running: Arc<AtomicUsize>,
    outbound: mpsc::Sender<pb::ConnectRequest>,
    task: tokio::task::JoinHandle<()>,
}

impl TestExecutor {
    /// Connects, registers `handlers` with `capacity`, and waits for
    /// `Registered`.
    pub async fn connect(
        channel: Channel,
        namespace: &str,
        handlers: &[&str],
        capacity: u32,
        handler: Handler,
    ) -> TestExecutor {
        TestExecutor::connect_labeled(channel, namespace, handlers, capacity, &[], handler).await
    }

    /// Like [`Self::connect`], registering these labels besides
    /// `suite=e2e`.
    pub async fn connect_labeled(
        channel: Channel,
        namespace: &str,
        handlers: &[&str],
        capacity: u32,
        labels: &[(&str, &str)],
        handler: Handler,
    ) -> TestExecutor {
        let mut registered_labels = HashMap::from([("suite".to_owned(), "e2e".to_owned())]);
        registered_labels.extend(
            labels
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
        );
        let (outbound, requests) = mpsc::channel::<pb::ConnectRequest>(1024);
        outbound
            .send(pb::ConnectRequest {
                message: Some(ToServer::Register(pb::Register {
                    name: "test-executor".into(),
                    instance_id: uuid::Uuid::now_v7().to_string(),
                    handlers: handlers.iter().map(|h| (*h).to_owned()).collect(),
                    max_concurrent_attempts: capacity,
                    labels: registered_labels,
                    held_attempt_ids: Vec::new(),
                    ..pb::Register::default()
                })),
            })
            .await
            .expect("queue register");
        let mut client =
            ExecutorServiceClient::with_interceptor(channel, Namespace::new(namespace));
        let mut responses = client
            .connect(ReceiverStream::new(requests))
            .await
            .expect("connect accepted")
            .into_inner();
        let first = responses
            .next()
            .await
            .expect("registered arrives")
            .expect("registered ok");
        let Some(FromServer::Registered(registered)) = first.message else {
            panic!("expected registered first, got {first:?}");
        };
        let observed = Arc::new(Mutex::new(Observed {
            executor_id: Some(registered.executor_id.clone()),
            ..Observed::default()
        }));
        let running = Arc::new(AtomicUsize::new(0));
        let max_running = Arc::new(AtomicUsize::new(0));
        let silent = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            // Heartbeats at the interval the server asked for, until told
            // to go silent or the stream closes.
            let outbound = outbound.clone();
            let silent = silent.clone();
            let interval =
                std::time::Duration::from_millis(registered.heartbeat_interval_ms.max(1));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(interval).await;
                    if silent.load(Ordering::SeqCst) {
                        return;
                    }
                    let heartbeat = pb::ConnectRequest {
                        message: Some(ToServer::Heartbeat(pb::Heartbeat::default())),
                    };
                    if outbound.send(heartbeat).await.is_err() {
                        return;
                    }
                }
            });
        }
        let task = {
            let observed = observed.clone();
            let outbound = outbound.clone();
            let running = running.clone();
            let max_running = max_running.clone();
            tokio::spawn(async move {
                let mut cancellations: HashMap<String, watch::Sender<bool>> = HashMap::new();
                while let Some(Ok(response)) = responses.next().await {
                    match response.message {
                        Some(FromServer::Assign(assign)) => {
                            let (cancel_sender, cancelled) = watch::channel(false);
                            cancellations.insert(assign.attempt_id.clone(), cancel_sender);
                            observed
                                .lock()
                                .expect("lock")
                                .assigned
                                .push(assign.attempt_id.clone());
                            let now_running = running.fetch_add(1, Ordering::SeqCst) + 1;
                            max_running.fetch_max(now_running, Ordering::SeqCst);
                            let assigned = Assigned {
                                run_id: assign.run_id,
                                task_id: assign.task_id,
                                attempt_id: assign.attempt_id,
                                attempt_number: assign.attempt_number,
                                handler: assign.handler,
                                input: serde_json::from_str(&assign.input_context_json)
                                    .expect("input is JSON"),
                                input_json: assign.input_context_json,
                                cancelled,
                            };
                            tokio::spawn(run_attempt(
                                assigned,
                                handler.clone(),
                                outbound.clone(),
                                running.clone(),
                            ));
                        }
                        Some(FromServer::Cancel(cancel)) => {
                            observed
                                .lock()
                                .expect("lock")
                                .cancels
                                .push(cancel.attempt_id.clone());
                            if let Some(sender) = cancellations.get(&cancel.attempt_id) {
                                let _ = sender.send(true);
                            }
                        }
                        Some(FromServer::ResultAck(ack)) => {
                            observed
                                .lock()
                                .expect("lock")
                                .acks
                                .push((ack.attempt_id, ack.disposition));
                        }
                        _ => {}
                    }
                }
            })
        };
        TestExecutor {
            observed,
            silent,
            running,
            max_running,
            outbound,
            task,
        }
    }

    pub fn executor_id(&self) -> String {
        self.observed
            .lock()
            .expect("lock")
            .executor_id
            .clone()
            .unwrap_or_default()
    }

    pub fn cancels(&self) -> Vec<String> {
        self.observed.lock().expect("lock").cancels.clone()
    }

    pub fn acks(&self) -> Vec<(String, i32)> {
        self.observed.lock().expect("lock").acks.clone()
    }

    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Sends a raw message on the stream, e.g. a replayed result.
    pub async fn send(&self, message: ToServer) {
        self.outbound
            .send(pb::ConnectRequest {
                message: Some(message),
            })
            .await
            .expect("stream open");
    }

    /// Stops sending heartbeats while keeping the stream open, like a
    /// process that hangs.
    pub fn go_silent(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }

    /// Whether the server has closed this executor's stream.
    pub fn is_closed(&self) -> bool {
        self.task.is_finished()
    }

    /// Closes the stream abruptly, like a crashed executor.
    pub fn kill(self) {
        self.task.abort();
    }
}

async fn run_attempt(
    assigned: Assigned,
    handler: Handler,
    outbound: mpsc::Sender<pb::ConnectRequest>,
    running: Arc<AtomicUsize>,
) {
    let attempt_id = assigned.attempt_id.clone();
    let mut cancelled = assigned.cancelled.clone();
    let _ = outbound
        .send(pb::ConnectRequest {
            message: Some(ToServer::Started(pb::Started {
                attempt_id: attempt_id.clone(),
            })),
        })
        .await;
    let outcome = handler(assigned).await;
    let message = match outcome {
        Outcome::Complete { set, removed } => ToServer::Completed(pb::Completed {
            attempt_id,
            set_json: set.to_string(),
            removed_keys: removed,
        }),
        Outcome::CompleteRaw(set_json) => ToServer::Completed(pb::Completed {
            attempt_id,
            set_json,
            removed_keys: Vec::new(),
        }),
        Outcome::Fail { message, retryable } => ToServer::Failed(pb::Failed {
            attempt_id,
            message,
            non_retryable: !retryable,
        }),
        Outcome::HangUntilCancelled => {
            while !*cancelled.borrow() {
                if cancelled.changed().await.is_err() {
                    break;
                }
            }
            ToServer::Failed(pb::Failed {
                attempt_id,
                message: "cancelled".into(),
                non_retryable: false,
            })
        }
    };
    running.fetch_sub(1, Ordering::SeqCst);
    let _ = outbound
        .send(pb::ConnectRequest {
            message: Some(message),
        })
        .await;
}
