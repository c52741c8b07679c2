//! `tributary.v1.ExecutorService`: the bidirectional executor stream and the
//! list of connected executors. The stream handler only translates: every
//! decision is the coordinator's.

use std::collections::BTreeMap;
use std::pin::Pin;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tributary_proto::timestamp_from_unix_ms;
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_request::Message as Inbound;
use tributary_proto::v1::connect_response::Message as Outbound;
use tributary_proto::v1::executor_service_server::ExecutorService;

use super::error::{ApiError, ApiResult};
use super::namespace::namespace_of;
use crate::dag::is_valid_handler;
use crate::dispatch::executors::{ExecutorCommand, ExecutorRegistration};
use crate::dispatch::held_values::ValueName;
use crate::dispatch::{CoordinatorHandle, ExecutorEvent};
use crate::engine::context::Delta;
use crate::engine::run::ResultDisposition;

/// Most attempts one executor may ask to run at once.
const MAX_CAPACITY: u32 = 10_000;

/// What the server tells executors in `Registered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolSettings {
    pub heartbeat_interval_ms: u64,
    pub lease_timeout_ms: u64,
    pub max_message_bytes: u64,
    pub max_context_bytes: usize,
}

pub struct ExecutorApi {
    coordinator: CoordinatorHandle,
    settings: ProtocolSettings,
    shutdown: watch::Receiver<bool>,
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
        }
    }

    async fn open(
        &self,
        request: Request<Streaming<pb::ConnectRequest>>,
    ) -> ApiResult<ReceiverStream<ExecutorCommand>> {
        let namespace = namespace_of(&request)?;
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await
            .map_err(|status| {
                ApiError::InvalidArgument(format!("reading register: {}", status.message()))
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
        let registration = validate_registration(register)?;
        let buffer = registration.capacity as usize * 4 + 64;
        let (outbound, receiver) = mpsc::channel(buffer);
        let (stream_guard, mut dropped_by_server) = watch::channel(false);
        let executor_id = self
            .coordinator
            .register_executor(&namespace, registration, outbound, stream_guard)
            .await?;
        let coordinator = self.coordinator.clone();
        let max_context_bytes = self.settings.max_context_bytes;
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = forward_inbound(inbound, &coordinator, &executor_id, max_context_bytes) => {}
                _ = shutdown.wait_for(|stopped| *stopped) => {}
                // The coordinator dropped the executor (its lease expired):
                // stop reading, which closes the stream.
                _ = dropped_by_server.wait_for(|dropped| *dropped) => {}
            }
            // When the server is stopping, the executor is not lost: its
            // attempts stay in flight in the database and it reclaims them
            // from the next server.
            if !*shutdown.borrow() {
                coordinator.executor_disconnected(&executor_id).await;
            }
        });
        Ok(ReceiverStream::new(receiver))
    }

    async fn list(
        &self,
        request: Request<pb::ListExecutorsRequest>,
    ) -> ApiResult<pb::ListExecutorsResponse> {
        let namespace = namespace_of(&request)?;
        let executors = self.coordinator.list_executors(&namespace).await?;
        Ok(pb::ListExecutorsResponse {
            executors: executors
                .into_iter()
                .map(|executor| pb::ExecutorInfo {
                    executor_id: executor.id,
                    name: executor.registration.name,
                    instance_id: executor.registration.instance_id,
                    handlers: executor.registration.handlers,
                    max_concurrent_attempts: executor.capacity,
                    in_flight_attempt_ids: executor.in_flight,
                    labels: executor.registration.labels.into_iter().collect(),
                    connected_at: Some(timestamp_from_unix_ms(executor.connected_at_ms)),
                    context_bytes_sent: executor.context_bytes_sent,
                    values_sent_by_reference: executor.values_sent_by_reference,
                })
                .collect(),
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

fn validate_registration(register: pb::Register) -> ApiResult<ExecutorRegistration> {
    if register.instance_id.is_empty() {
        return Err(ApiError::InvalidArgument(
            "register.instance_id is missing".to_owned(),
        ));
    }
    if register.handlers.is_empty() {
        return Err(ApiError::InvalidArgument(
            "register.handlers is empty: an executor must serve at least one handler".to_owned(),
        ));
    }
    if let Some(bad) = register
        .handlers
        .iter()
        .find(|handler| !is_valid_handler(handler))
    {
        return Err(ApiError::InvalidArgument(format!(
            "invalid handler {bad:?} in register: must be 1-128 characters of a-z, A-Z, 0-9, _, -, ., : and /"
        )));
    }
    if !(1..=MAX_CAPACITY).contains(&register.max_concurrent_attempts) {
        return Err(ApiError::InvalidArgument(format!(
            "register.max_concurrent_attempts must be between 1 and {MAX_CAPACITY}, got {}",
            register.max_concurrent_attempts
        )));
    }
    let mut handlers = register.handlers;
    handlers.sort();
    handlers.dedup();
    Ok(ExecutorRegistration {
        name: register.name,
        instance_id: register.instance_id,
        handlers,
        capacity: register.max_concurrent_attempts,
        labels: register.labels.into_iter().collect::<BTreeMap<_, _>>(),
        held_attempt_ids: register.held_attempt_ids,
        value_cache_bytes: register.value_cache_bytes,
    })
}

/// Passes the executor's messages to the coordinator until the stream ends.
async fn forward_inbound(
    mut inbound: Streaming<pb::ConnectRequest>,
    coordinator: &CoordinatorHandle,
    executor_id: &str,
    max_context_bytes: usize,
) {
    loop {
        let message = match inbound.message().await {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(status) => {
                tracing::debug!(executor_id, %status, "executor stream failed");
                return;
            }
        };
        let event = match message.message {
            Some(Inbound::Heartbeat(_)) => ExecutorEvent::Heartbeat,
            Some(Inbound::Started(started)) => ExecutorEvent::Started {
                attempt_id: started.attempt_id,
            },
            Some(Inbound::Completed(completed)) => completed_event(completed, max_context_bytes),
            Some(Inbound::Failed(failed)) => ExecutorEvent::Failed {
                attempt_id: failed.attempt_id,
                message: failed.message,
                retryable: !failed.non_retryable,
            },
            Some(Inbound::CapacityChanged(change)) => ExecutorEvent::CapacityChanged {
                capacity: change.max_concurrent_attempts.min(MAX_CAPACITY),
            },
            Some(Inbound::FetchValues(fetch)) => fetch_values_event(fetch),
            // A second register or an empty message: nothing to act on.
            Some(Inbound::Register(_)) | None => continue,
        };
        if coordinator
            .executor_event(executor_id, event)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A result that is too large or not a JSON object cannot be applied; it
/// fails the attempt (without retry: the same code would send it again)
/// with a message saying why.
fn completed_event(completed: pb::Completed, max_context_bytes: usize) -> ExecutorEvent {
    let failure = |message: String| ExecutorEvent::Failed {
        attempt_id: completed.attempt_id.clone(),
        message,
        retryable: false,
    };
    let size = completed.set_json.len();
    if size > max_context_bytes {
        return failure(format!(
            "the result's set_json is {size} bytes, over the max_context_bytes limit of {max_context_bytes} bytes by {}",
            size - max_context_bytes
        ));
    }
    match Delta::parse(&completed.set_json, &completed.removed_keys) {
        Ok(delta) => {
            if let Some(key) = delta
                .set
                .iter()
                .map(|(key, _)| key)
                .find(|key| delta.removed.contains(key))
            {
                return failure(format!("the result both sets and removes the key {key:?}"));
            }
            ExecutorEvent::Completed {
                attempt_id: completed.attempt_id,
                delta,
            }
        }
        Err(error) => failure(format!("the result is invalid: {error}")),
    }
}

fn outbound_to_proto(command: ExecutorCommand, settings: &ProtocolSettings) -> pb::ConnectResponse {
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
            run_id,
            task_id: assignment.task_id,
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
        ExecutorCommand::ResultAck {
            attempt_id,
            disposition,
        } => Outbound::ResultAck(pb::ResultAck {
            attempt_id,
            disposition: match disposition {
                ResultDisposition::Accepted => pb::ResultDisposition::Accepted,
                ResultDisposition::Stale => pb::ResultDisposition::Stale,
            } as i32,
            reason: String::new(),
        }),
        ExecutorCommand::HeartbeatAck => Outbound::HeartbeatAck(pb::HeartbeatAck {}),
    };
    pb::ConnectResponse {
        message: Some(message),
    }
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
        let stream = commands.map(move |command| Ok(outbound_to_proto(command, &settings)));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_executors(
        &self,
        request: Request<pb::ListExecutorsRequest>,
    ) -> Result<Response<pb::ListExecutorsResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }
}
