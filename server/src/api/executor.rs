//! `tributary.v1.ExecutorService`: the bidirectional executor stream and the
//! list of connected executors. The stream handler only translates: every
//! decision is the coordinator's.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tributary_proto::timestamp_from_unix_ms;
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_request::Message as Inbound;
use tributary_proto::v1::connect_response::Message as Outbound;
use tributary_proto::v1::executor_service_server::ExecutorService;

use super::error::{ApiError, ApiResult};
use super::executor_input::{
    MAX_ATTEMPT_ID_BYTES, MAX_CAPACITY, RegisterLimits, completed_event, failed_event,
    is_plausible_attempt_id, validate_registration,
};
use super::executor_watch::{ExecutorChanges, ExecutorListStream, executor_info, watch_executors};
use super::namespace::namespace_of;
use super::text::truncate_at_char;
use super::wire_status::{too_large_sizes, unreadable_message};
use crate::auth::Principal;
use crate::clock::now_unix_ms;
use crate::dispatch::executors::{ExecutorCommand, LastHeard, ResultAnswer, StreamEnd};
use crate::dispatch::held_values::ValueName;
use crate::dispatch::{CoordinatorHandle, DisconnectReason, ExecutorEvent};
use crate::engine::records::EventRecord;

/// Messages an executor may have waiting for the coordinator. An executor
/// following the protocol has at most two per attempt in flight (started,
/// then its result) plus capacity changes; more means it floods the server.
const MAX_QUEUED_EVENTS: usize = 2 * MAX_CAPACITY as usize + 64;

/// Completes when the key that opened a stream stops working.
type KeyEnded = Pin<Box<dyn Future<Output = &'static str> + Send>>;

/// What the server tells executors in `Registered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolSettings {
    pub heartbeat_interval_ms: u64,
    pub lease_timeout_ms: u64,
    pub max_message_bytes: u64,
    pub max_context_bytes: usize,
    /// Put the attempt span's W3C trace context in each `Assign` (when the
    /// server exports traces).
    pub trace_context: bool,
    /// What one `Register` may hold.
    pub register: RegisterLimits,
    /// How long a stream may stay open before its `Register`.
    pub register_timeout_ms: u64,
}

pub struct ExecutorApi {
    coordinator: CoordinatorHandle,
    settings: ProtocolSettings,
    shutdown: watch::Receiver<bool>,
    /// Raised when an executor connects, disconnects or changes capacity,
    /// for `WatchExecutors`.
    changes: ExecutorChanges,
    /// Committed events, which move in-flight counts, for `WatchExecutors`.
    events: Option<broadcast::Sender<Arc<EventRecord>>>,
}

impl ExecutorApi {
    /// `shutdown` turns true when the server stops; the executors' request
    /// streams are then dropped, so that open streams cannot hold up the
    /// graceful shutdown.
    pub fn new(
        coordinator: CoordinatorHandle,
        settings: ProtocolSettings,
        shutdown: watch::Receiver<bool>,
    ) -> ExecutorApi {
        ExecutorApi {
            coordinator,
            settings,
            shutdown,
            changes: ExecutorChanges::new(),
            events: None,
        }
    }

    /// Lets `WatchExecutors` follow in-flight counts through the committed
    /// events; without them it follows connections and capacities only.
    pub fn with_events(mut self, events: broadcast::Sender<Arc<EventRecord>>) -> ExecutorApi {
        self.events = Some(events);
        self
    }

    async fn open(
        &self,
        request: Request<Streaming<pb::ConnectRequest>>,
    ) -> ApiResult<ReceiverStream<ExecutorCommand>> {
        let namespace = namespace_of(&request)?;
        // The key's end (revocation, expiry) stops the reader like a lease
        // expiry does; the auth layer ends the response with UNAUTHENTICATED.
        let key_ended: KeyEnded = match request.extensions().get::<Principal>() {
            Some(principal) => Box::pin(principal.ended()),
            None => Box::pin(std::future::pending()),
        };
        let mut inbound = request.into_inner();
        // A stream that never registers would hold its connection's
        // resources for nothing.
        let timeout = Duration::from_millis(self.settings.register_timeout_ms);
        let first = tokio::time::timeout(timeout, inbound.message())
            .await
            .map_err(|_| {
                ApiError::InvalidArgument(format!(
                    "no register message within {} ms of opening the stream",
                    self.settings.register_timeout_ms
                ))
            })?
            .map_err(|status| match unreadable_message(&status) {
                Some(refusal) if refusal.code() == tonic::Code::ResourceExhausted => {
                    ApiError::ResourceExhausted(format!("register: {}", refusal.message()))
                }
                Some(refusal) => {
                    ApiError::InvalidArgument(format!("register: {}", refusal.message()))
                }
                None => {
                    ApiError::InvalidArgument(format!("reading register: {}", status.message()))
                }
            })?
            .ok_or_else(|| {
                ApiError::InvalidArgument("the stream ended before its register message".to_owned())
            })?;
        let register = match first.message {
            Some(Inbound::Register(register)) => register,
            other => {
                return Err(ApiError::InvalidArgument(format!(
                    "the first message on the stream must be register, got {}",
                    inbound_name(other.as_ref())
                )));
            }
        };
        let registration = validate_registration(register, &self.settings.register)?;
        let buffer = registration.capacity as usize * 4 + 64;
        let (outbound, receiver) = mpsc::channel(buffer);
        let (stream_guard, dropped_by_server) = watch::channel(false);
        let last_heard = LastHeard::new(now_unix_ms());
        let executor_id = self
            .coordinator
            .register_executor(
                &namespace,
                registration,
                outbound.clone(),
                stream_guard,
                last_heard.clone(),
            )
            .await?;
        self.changes.notify();
        let connection = Connection {
            executor_id,
            outbound,
            last_heard,
            max_context_bytes: self.settings.max_context_bytes,
        };
        tokio::spawn(serve_connection(
            inbound,
            connection,
            self.coordinator.clone(),
            self.shutdown.clone(),
            dropped_by_server,
            self.changes.clone(),
            key_ended,
        ));
        Ok(ReceiverStream::new(receiver))
    }

    async fn list(
        &self,
        request: Request<pb::ListExecutorsRequest>,
    ) -> ApiResult<pb::ListExecutorsResponse> {
        let namespace = namespace_of(&request)?;
        let executors = self.coordinator.list_executors(&namespace).await?;
        Ok(pb::ListExecutorsResponse {
            executors: executors.into_iter().map(executor_info).collect(),
        })
    }
}

fn inbound_name(message: Option<&Inbound>) -> &'static str {
    match message {
        None => "an empty message",
        Some(Inbound::Register(_)) => "register",
        Some(Inbound::Heartbeat(_)) => "heartbeat",
        Some(Inbound::Started(_)) => "started",
        Some(Inbound::Completed(_)) => "completed",
        Some(Inbound::Failed(_)) => "failed",
        Some(Inbound::CapacityChanged(_)) => "capacity_changed",
        Some(Inbound::FetchValues(_)) => "fetch_values",
    }
}

/// The server's end of one executor's stream, as its reader sees it.
struct Connection {
    executor_id: String,
    /// The stream's outbound queue, shared with the coordinator: the reader
    /// answers heartbeats and protocol errors on it directly.
    outbound: mpsc::Sender<ExecutorCommand>,
    last_heard: LastHeard,
    max_context_bytes: usize,
}

/// Reads the executor's messages until the stream ends. Liveness is handled
/// here, not by the coordinator: every message is noted in `last_heard` and
/// heartbeats are answered at once, so that executors keep their leases
/// while the coordinator waits for the database. Everything else goes to
/// the coordinator in order, through a queue that the reader never waits
/// on; when the stream ends, what was queued is delivered before the
/// executor is reported gone.
async fn serve_connection(
    inbound: Streaming<pb::ConnectRequest>,
    connection: Connection,
    coordinator: CoordinatorHandle,
    mut shutdown: watch::Receiver<bool>,
    mut dropped_by_server: watch::Receiver<bool>,
    changes: ExecutorChanges,
    key_ended: KeyEnded,
) {
    let (events, mut queued) = mpsc::channel::<ExecutorEvent>(MAX_QUEUED_EVENTS);
    let executor_id = connection.executor_id.clone();
    let forwarder = {
        let coordinator = coordinator.clone();
        let executor_id = executor_id.clone();
        let changes = changes.clone();
        tokio::spawn(async move {
            while let Some(event) = queued.recv().await {
                let capacity_changed = matches!(event, ExecutorEvent::CapacityChanged { .. });
                if coordinator
                    .executor_event(&executor_id, event)
                    .await
                    .is_err()
                {
                    return;
                }
                if capacity_changed {
                    changes.notify();
                }
            }
        })
    };
    let reason = tokio::select! {
        reason = read_messages(inbound, &connection, events) => reason,
        _ = shutdown.wait_for(|stopped| *stopped) => DisconnectReason::StreamClosed,
        // The coordinator dropped the executor (its lease expired): stop
        // reading, which closes the stream.
        _ = dropped_by_server.wait_for(|dropped| *dropped) => DisconnectReason::StreamClosed,
        // The executor's key was revoked or expired: the server ends the
        // stream, and its attempts go back to the queue as for a broken one.
        reason = key_ended => {
            tracing::info!(executor_id, reason, "closing the executor stream");
            DisconnectReason::StreamBroken
        }
    };
    drop(connection);
    let _ = forwarder.await;
    // When the server is stopping, the executor is not lost: its attempts
    // stay in flight in the database and it reclaims them from the next
    // server.
    if !*shutdown.borrow() {
        coordinator
            .executor_disconnected(&executor_id, reason)
            .await;
        changes.notify();
    }
}

/// Reads until the stream ends; says how it ended (a protocol violation or
/// a flood counts as closed: the server closes it and logs why).
async fn read_messages(
    mut inbound: Streaming<pb::ConnectRequest>,
    connection: &Connection,
    events: mpsc::Sender<ExecutorEvent>,
) -> DisconnectReason {
    let close = |end: StreamEnd| {
        let _ = connection.outbound.try_send(ExecutorCommand::Close(end));
    };
    loop {
        let message = match inbound.message().await {
            Ok(Some(message)) => message,
            Ok(None) => return DisconnectReason::StreamClosed,
            Err(status) => {
                tracing::debug!(executor_id = connection.executor_id, %status, "executor stream failed");
                if let Some(refusal) = unreadable_message(&status) {
                    end_unreadable(connection, &events, &status, &refusal);
                }
                return DisconnectReason::StreamBroken;
            }
        };
        connection.last_heard.heard_at(now_unix_ms());
        let event = match message.message {
            Some(Inbound::Heartbeat(_)) => {
                // A full queue means the executor is not reading; the
                // coordinator drops it for that.
                let _ = connection.outbound.try_send(ExecutorCommand::HeartbeatAck);
                continue;
            }
            Some(Inbound::Register(_)) => {
                close(StreamEnd::ProtocolViolation(
                    "register may only be the first message of a stream".to_owned(),
                ));
                return DisconnectReason::StreamClosed;
            }
            Some(Inbound::Started(started)) => {
                if !is_plausible_attempt_id(&started.attempt_id) {
                    continue;
                }
                ExecutorEvent::Started {
                    attempt_id: started.attempt_id,
                }
            }
            Some(Inbound::Completed(completed)) => {
                if !is_plausible_attempt_id(&completed.attempt_id) {
                    answer_not_held(connection, completed.attempt_id);
                    continue;
                }
                completed_event(completed, connection.max_context_bytes)
            }
            Some(Inbound::Failed(failed)) => {
                if !is_plausible_attempt_id(&failed.attempt_id) {
                    answer_not_held(connection, failed.attempt_id);
                    continue;
                }
                failed_event(failed)
            }
            Some(Inbound::CapacityChanged(change)) => {
                if change.max_concurrent_attempts > MAX_CAPACITY {
                    close(StreamEnd::ProtocolViolation(format!(
                        "capacity_changed.max_concurrent_attempts must be between 0 and {MAX_CAPACITY}, got {}",
                        change.max_concurrent_attempts
                    )));
                    return DisconnectReason::StreamClosed;
                }
                ExecutorEvent::CapacityChanged {
                    capacity: change.max_concurrent_attempts,
                }
            }
            Some(Inbound::FetchValues(fetch)) => fetch_values_event(fetch),
            None => continue,
        };
        if events.try_send(event).is_err() {
            close(StreamEnd::Flooded);
            return DisconnectReason::StreamClosed;
        }
    }
}

/// Ends a stream whose executor sent a message the server cannot read, with
/// the status saying why, after charging it to the attempt it was the
/// result of when that is known (see `ExecutorEvent::Unreadable`).
fn end_unreadable(
    connection: &Connection,
    events: &mpsc::Sender<ExecutorEvent>,
    read_error: &Status,
    refusal: &Status,
) {
    let reason = match too_large_sizes(read_error.message()) {
        Some((size, limit)) => format!(
            "the executor sent a message (its result) of {size} bytes, over the message limit of {limit} bytes by {}",
            size.saturating_sub(limit)
        ),
        None => format!(
            "the executor sent a message the server cannot read: {}",
            refusal.message()
        ),
    };
    let _ = events.try_send(ExecutorEvent::Unreadable { reason });
    let end = match refusal.code() {
        tonic::Code::ResourceExhausted => StreamEnd::OverLimit(refusal.message().to_owned()),
        _ => StreamEnd::ProtocolViolation(refusal.message().to_owned()),
    };
    let _ = connection.outbound.try_send(ExecutorCommand::Close(end));
}

/// Answers a result naming an attempt the server could never have issued,
/// echoing at most as much of the id as a real one could be.
fn answer_not_held(connection: &Connection, attempt_id: String) {
    let _ = connection.outbound.try_send(ExecutorCommand::ResultAck {
        attempt_id: truncate_at_char(attempt_id, MAX_ATTEMPT_ID_BYTES),
        answer: ResultAnswer::NotHeld,
    });
}

/// The status that ends a stream, for the executor to act on.
fn closing_status(end: StreamEnd) -> Status {
    match end {
        StreamEnd::LeaseExpired { lease_timeout_ms } => Status::unavailable(format!(
            "lease expired: nothing was heard from this executor for {lease_timeout_ms} ms; reconnect"
        )),
        StreamEnd::ProtocolViolation(message) => Status::invalid_argument(message),
        StreamEnd::OverLimit(message) => Status::resource_exhausted(message),
        StreamEnd::Flooded => Status::resource_exhausted(format!(
            "more than {MAX_QUEUED_EVENTS} messages were waiting for the server; the executor sends faster than the protocol allows"
        )),
    }
}

fn outbound_to_proto(
    command: ExecutorCommand,
    settings: &ProtocolSettings,
) -> Result<pb::ConnectResponse, Status> {
    let message = match command {
        ExecutorCommand::Registered { executor_id } => Outbound::Registered(pb::Registered {
            executor_id,
            heartbeat_interval_ms: settings.heartbeat_interval_ms,
            lease_timeout_ms: settings.lease_timeout_ms,
            max_message_bytes: settings.max_message_bytes,
            max_context_bytes: settings.max_context_bytes as u64,
        }),
        ExecutorCommand::Assign {
            run_id,
            workflow_name,
            assignment,
            input,
        } => Outbound::Assign(pb::Assign {
            traceparent: if settings.trace_context {
                crate::telemetry::traces::traceparent(&run_id, &assignment.attempt_id)
            } else {
                String::new()
            },
            tracestate: String::new(),
            run_id,
            task_id: assignment.task_id,
            map_index: assignment.map_index,
            attempt_id: assignment.attempt_id,
            attempt_number: assignment.attempt_number,
            handler: assignment.handler,
            input_context_json: input.input_context_json,
            deadline: Some(timestamp_from_unix_ms(assignment.deadline_ms)),
            workflow_name,
            inline_values: input.inline_values.iter().map(value_ref).collect(),
            references: input.references.iter().map(value_ref).collect(),
        }),
        ExecutorCommand::Values { run_id, values } => Outbound::Values(pb::Values {
            run_id,
            values: values
                .iter()
                .map(|(name, value)| pb::Value {
                    r#ref: Some(value_ref(name)),
                    value_json: value.get().to_owned(),
                })
                .collect(),
        }),
        ExecutorCommand::ForgetRun { run_id } => Outbound::ForgetRun(pb::ForgetRun { run_id }),
        ExecutorCommand::Cancel { attempt_id, reason } => {
            Outbound::Cancel(pb::Cancel { attempt_id, reason })
        }
        ExecutorCommand::ResultAck { attempt_id, answer } => {
            let (disposition, reason) = match answer {
                ResultAnswer::Accepted => (pb::ResultDisposition::Accepted, String::new()),
                ResultAnswer::Stale => (pb::ResultDisposition::Stale, String::new()),
                ResultAnswer::Rejected(reason) => (pb::ResultDisposition::Rejected, reason),
                ResultAnswer::NotHeld => (pb::ResultDisposition::NotHeld, String::new()),
            };
            Outbound::ResultAck(pb::ResultAck {
                attempt_id,
                disposition: disposition as i32,
                reason,
            })
        }
        ExecutorCommand::HeartbeatAck => Outbound::HeartbeatAck(pb::HeartbeatAck {}),
        ExecutorCommand::Close(end) => return Err(closing_status(end)),
    };
    Ok(pb::ConnectResponse {
        message: Some(message),
    })
}

fn value_ref(name: &ValueName) -> pb::ValueRef {
    pb::ValueRef {
        key: name.key.to_string(),
        writer_attempt_id: name.writer_attempt_id.to_string(),
    }
}

/// Most refs one `fetch_values` may ask for; the rest go unanswered (absent
/// from `values`, as for a finished run).
const MAX_FETCH_REFS: usize = 10_000;

fn fetch_values_event(fetch: pb::FetchValues) -> ExecutorEvent {
    ExecutorEvent::FetchValues {
        run_id: fetch.run_id,
        refs: fetch
            .refs
            .into_iter()
            .take(MAX_FETCH_REFS)
            .map(|value_ref| ValueName {
                key: value_ref.key.into(),
                writer_attempt_id: value_ref.writer_attempt_id.into(),
            })
            .collect(),
    }
}

type ConnectStream = Pin<Box<dyn Stream<Item = Result<pb::ConnectResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExecutorService for ExecutorApi {
    type ConnectStream = ConnectStream;

    async fn connect(
        &self,
        request: Request<Streaming<pb::ConnectRequest>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let commands = self.open(request).await?;
        let settings = self.settings;
        let stream = commands.map(move |command| outbound_to_proto(command, &settings));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_executors(
        &self,
        request: Request<pb::ListExecutorsRequest>,
    ) -> Result<Response<pb::ListExecutorsResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    type WatchExecutorsStream = ExecutorListStream;

    async fn watch_executors(
        &self,
        request: Request<pb::WatchExecutorsRequest>,
    ) -> Result<Response<Self::WatchExecutorsStream>, Status> {
        let namespace = namespace_of(&request).map_err(Status::from)?;
        Ok(Response::new(watch_executors(
            self.coordinator.clone(),
            namespace,
            &self.changes,
            self.events.as_ref().map(broadcast::Sender::subscribe),
            self.shutdown.clone(),
        )))
    }
}
