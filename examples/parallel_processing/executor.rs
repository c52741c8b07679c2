//! A small executor over the real protocol (`ExecutorService.Connect`):
//! registers the task handlers, runs each `Assign` as its own tokio task with
//! the input context, reports `Started` then `Completed` (the delta) or
//! `Failed`, honours `Cancel`, and sends heartbeats at the interval the
//! server asks for.
//!
//! It stands in for the Rust SDK's worker until that exists, and keeps what
//! the SDK does not need to: when each attempt started and finished on this
//! side, which the example's report uses to measure real overlap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;
use tracing::{debug, warn};
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_request::Message as ToServer;
use tributary_proto::v1::connect_response::Message as FromServer;
use tributary_proto::v1::executor_service_client::ExecutorServiceClient;

use crate::context::{Context, TaskError};
use crate::tasks::{Simulation, TaskFn};

/// The largest message this client encodes or decodes; the server's own
/// limit (sent in `Registered`) is what really bounds a result.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Why the executor could not connect or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("the server refused the executor stream: {0}")]
    Refused(tonic::Status),
    #[error("the server answered the registration with {0} instead of `registered`")]
    NotRegistered(String),
    #[error("the executor stream failed: {0}")]
    Stream(tonic::Status),
    #[error("the server closed the executor stream")]
    Closed,
}

/// When one attempt ran, as seen by this executor.
#[derive(Debug, Clone)]
pub struct AttemptTiming {
    pub run_id: String,
    pub task_id: String,
    pub started: Instant,
    pub finished: Instant,
    pub succeeded: bool,
}

/// What the executor serves and how.
pub struct ExecutorOptions {
    /// A name for `ListExecutors`.
    pub name: String,
    /// `(handler, function)` pairs.
    pub handlers: Vec<(String, TaskFn)>,
    /// Attempts run at once.
    pub capacity: u32,
    /// Passed to every task.
    pub simulation: Simulation,
}

/// A connected executor running in the background.
pub struct Executor {
    executor_id: String,
    timings: Arc<Mutex<Vec<AttemptTiming>>>,
    task: Option<JoinHandle<Result<(), ExecutorError>>>,
}

impl Executor {
    /// Opens the stream, registers and waits for `Registered`.
    pub async fn connect(
        channel: Channel,
        options: ExecutorOptions,
    ) -> Result<Executor, ExecutorError> {
        let (outbound, requests) = mpsc::channel::<pb::ConnectRequest>(256);
        let register = pb::Register {
            name: options.name,
            instance_id: uuid::Uuid::now_v7().to_string(),
            handlers: options
                .handlers
                .iter()
                .map(|(handler, _)| handler.clone())
                .collect(),
            max_concurrent_attempts: options.capacity,
            labels: HashMap::from([("example".to_owned(), "parallel_processing".to_owned())]),
            held_attempt_ids: Vec::new(),
        };
        outbound
            .send(to_server(ToServer::Register(register)))
            .await
            .expect("the request stream is open: its receiver is held right here");
        let mut client = ExecutorServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut responses = client
            .connect(ReceiverStream::new(requests))
            .await
            .map_err(ExecutorError::Refused)?
            .into_inner();
        let registered = match responses.message().await {
            Ok(Some(pb::ConnectResponse {
                message: Some(FromServer::Registered(registered)),
            })) => registered,
            Ok(Some(other)) => return Err(ExecutorError::NotRegistered(format!("{other:?}"))),
            Ok(None) => return Err(ExecutorError::Closed),
            Err(status) => return Err(ExecutorError::Refused(status)),
        };
        debug!(executor_id = %registered.executor_id, "executor registered");
        let timings = Arc::new(Mutex::new(Vec::new()));
        let session = Session {
            outbound,
            handlers: options.handlers.into_iter().collect(),
            simulation: options.simulation,
            timings: timings.clone(),
            attempts: JoinSet::new(),
            running: HashMap::new(),
            task_ids: HashMap::new(),
        };
        let heartbeat_interval = Duration::from_millis(registered.heartbeat_interval_ms.max(10));
        let task = tokio::spawn(session.run(responses, heartbeat_interval));
        Ok(Executor {
            executor_id: registered.executor_id,
            timings,
            task: Some(task),
        })
    }

    /// The id the server gave this executor.
    pub fn executor_id(&self) -> &str {
        &self.executor_id
    }

    /// The attempts that have ended so far, in the order they ended.
    pub fn timings(&self) -> Vec<AttemptTiming> {
        self.timings.lock().expect("timings lock").clone()
    }

    /// Waits until the executor stops on its own, which it only does when
    /// the stream fails or the server closes it. Pending forever after it
    /// has returned once.
    pub async fn stopped(&mut self) -> ExecutorError {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let result = task.await;
        self.task = None;
        match result {
            Ok(Ok(())) => ExecutorError::Closed,
            Ok(Err(error)) => error,
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
        }
    }

    /// Closes the stream; attempts still running are dropped.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// The state of one connection.
struct Session {
    outbound: mpsc::Sender<pb::ConnectRequest>,
    handlers: HashMap<String, TaskFn>,
    simulation: Simulation,
    timings: Arc<Mutex<Vec<AttemptTiming>>>,
    /// Running attempts; each yields its attempt id when it has reported.
    attempts: JoinSet<String>,
    /// Attempt id -> the sender that cancels it.
    running: HashMap<String, oneshot::Sender<String>>,
    /// Tokio task id -> attempt id, to report an attempt whose task panicked.
    task_ids: HashMap<tokio::task::Id, String>,
}

impl Session {
    async fn run(
        mut self,
        mut responses: Streaming<pb::ConnectResponse>,
        heartbeat_interval: Duration,
    ) -> Result<(), ExecutorError> {
        let mut heartbeat = tokio::time::interval(heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = responses.message() => match message {
                    Ok(Some(response)) => self.handle(response).await,
                    Ok(None) => return Err(ExecutorError::Closed),
                    Err(status) => return Err(ExecutorError::Stream(status)),
                },
                _ = heartbeat.tick() => {
                    let running_attempt_ids = self.running.keys().cloned().collect();
                    self.send(ToServer::Heartbeat(pb::Heartbeat { running_attempt_ids })).await;
                }
                Some(joined) = self.attempts.join_next_with_id(), if !self.attempts.is_empty() => {
                    match joined {
                        Ok((task_id, attempt_id)) => {
                            self.task_ids.remove(&task_id);
                            self.running.remove(&attempt_id);
                        }
                        Err(join_error) => {
                            let Some(attempt_id) = self.task_ids.remove(&join_error.id()) else {
                                continue;
                            };
                            self.running.remove(&attempt_id);
                            warn!(%attempt_id, %join_error, "a task panicked");
                            self.send(ToServer::Failed(pb::Failed {
                                attempt_id,
                                message: format!("the task panicked: {join_error}"),
                                non_retryable: true,
                            }))
                            .await;
                        }
                    }
                }
            }
        }
    }

    async fn handle(&mut self, response: pb::ConnectResponse) {
        match response.message {
            Some(FromServer::Assign(assign)) => self.start(assign).await,
            Some(FromServer::Cancel(cancel)) => {
                if let Some(cancel_sender) = self.running.remove(&cancel.attempt_id) {
                    let _ = cancel_sender.send(cancel.reason);
                }
            }
            Some(FromServer::ResultAck(ack)) => {
                debug!(attempt_id = %ack.attempt_id, disposition = ack.disposition, "result acknowledged");
            }
            Some(FromServer::HeartbeatAck(_)) | Some(FromServer::Registered(_)) | None => {}
        }
    }

    async fn start(&mut self, assign: pb::Assign) {
        let attempt_id = assign.attempt_id.clone();
        let Some(task) = self.handlers.get(&assign.handler).cloned() else {
            self.send(ToServer::Failed(pb::Failed {
                attempt_id,
                message: format!("this executor has no handler {:?}", assign.handler),
                non_retryable: true,
            }))
            .await;
            return;
        };
        self.send(ToServer::Started(pb::Started {
            attempt_id: attempt_id.clone(),
        }))
        .await;
        let (cancel_sender, cancelled) = oneshot::channel();
        self.running.insert(attempt_id.clone(), cancel_sender);
        let spawned = self.attempts.spawn(run_attempt(
            assign,
            task,
            self.simulation,
            cancelled,
            self.outbound.clone(),
            self.timings.clone(),
        ));
        self.task_ids.insert(spawned.id(), attempt_id);
    }

    async fn send(&self, message: ToServer) {
        // A closed stream shows up on the response side, which ends the loop.
        let _ = self.outbound.send(to_server(message)).await;
    }
}

/// Runs one attempt to its end (or its cancellation) and reports it.
async fn run_attempt(
    assign: pb::Assign,
    task: TaskFn,
    simulation: Simulation,
    cancelled: oneshot::Receiver<String>,
    outbound: mpsc::Sender<pb::ConnectRequest>,
    timings: Arc<Mutex<Vec<AttemptTiming>>>,
) -> String {
    let started = Instant::now();
    let outcome = match Context::from_json(&assign.input_context_json) {
        Ok(context) => tokio::select! {
            result = task(context, simulation) => result.map(Context::into_delta),
            reason = cancelled => Err(TaskError::retryable(format!(
                "cancelled: {}",
                reason.unwrap_or_else(|_| "the executor stopped".to_owned())
            ))),
        },
        Err(error) => Err(error),
    };
    let finished = Instant::now();
    let message = match outcome {
        Ok(delta) => ToServer::Completed(pb::Completed {
            attempt_id: assign.attempt_id.clone(),
            set_json: delta.set_json(),
            removed_keys: delta.removed,
        }),
        Err(error) => {
            warn!(task_id = %assign.task_id, attempt = assign.attempt_number, %error, "task failed");
            ToServer::Failed(pb::Failed {
                attempt_id: assign.attempt_id.clone(),
                message: error.message,
                non_retryable: !error.retryable,
            })
        }
    };
    timings.lock().expect("timings lock").push(AttemptTiming {
        run_id: assign.run_id,
        task_id: assign.task_id,
        started,
        finished,
        succeeded: matches!(message, ToServer::Completed(_)),
    });
    let _ = outbound.send(to_server(message)).await;
    assign.attempt_id
}

fn to_server(message: ToServer) -> pb::ConnectRequest {
    pb::ConnectRequest {
        message: Some(message),
    }
}
