//! `tributary.v1.RunService`: start, read, list, cancel and retry runs.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tributary_proto::v1 as pb;
use tributary_proto::v1::run_service_server::RunService;

use super::convert::{
    decode_page_token, encode_page_token, event_to_proto, event_type_from_proto, fit_run_contexts,
    page_size, run_detail_to_proto, run_status_from_proto, run_status_to_proto,
    run_summary_to_proto, waiting_reason_to_proto,
};
use super::error::{ApiError, ApiResult};
use super::instances::{InstanceWindow, fit_run};
use super::namespace::namespace_of;
use super::text::check_no_nul;
use crate::dispatch::start::{RunRequest, start_or_find_run};
use crate::dispatch::{CancelOutcome, CoordinatorHandle, RetryRunCommand};
use crate::engine::context::{Context, context_from_stored};
use crate::engine::records::{EventFilter, EventRecord, RunFilter, RunStatus};
use crate::engine::run::parse_instance_key;
use crate::events::{EventFeed, WatchItem, WatchStart};
use crate::store::{Store, StoreError};

/// Longest accepted idempotency key, in bytes.
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// Most values accepted in each filter list of `WatchEvents`.
const MAX_FILTER_VALUES: usize = 100;

pub struct RunApi {
    store: Arc<dyn Store>,
    coordinator: CoordinatorHandle,
    events: EventFeed,
    max_context_bytes: usize,
    /// The largest message the server encodes; answers are fitted to it.
    max_message_bytes: usize,
}

impl RunApi {
    pub fn new(
        store: Arc<dyn Store>,
        coordinator: CoordinatorHandle,
        events: EventFeed,
        max_context_bytes: usize,
        max_message_bytes: usize,
    ) -> RunApi {
        RunApi {
            store,
            coordinator,
            events,
            max_context_bytes,
            max_message_bytes,
        }
    }

    /// Bytes an answer's runs may take: the message limit less room for
    /// the envelope and the page token.
    fn answer_budget(&self) -> usize {
        self.max_message_bytes.saturating_sub(4 * 1024)
    }

    async fn start(
        &self,
        request: Request<pb::StartRunRequest>,
    ) -> ApiResult<pb::StartRunResponse> {
        let namespace = namespace_of(&request)?;
        let request = request.into_inner();
        if request.workflow_name.is_empty() {
            return Err(ApiError::InvalidArgument(
                "workflow_name is missing".to_owned(),
            ));
        }
        check_no_nul("workflow_name", &request.workflow_name)?;
        check_no_nul("workflow_version", &request.workflow_version)?;
        check_no_nul("idempotency_key", &request.idempotency_key)?;
        let input = if request.input_context_json.trim().is_empty() {
            "{}".to_owned()
        } else {
            request.input_context_json
        };
        if input.len() > self.max_context_bytes {
            return Err(ApiError::ResourceExhausted(format!(
                "input_context_json is {} bytes, over the max_context_bytes limit of {} bytes by {}",
                input.len(),
                self.max_context_bytes,
                input.len() - self.max_context_bytes
            )));
        }
        // Parsed here for the error message; the engine parses it again.
        Context::from_input(&input)
            .map_err(|error| ApiError::InvalidArgument(error.to_string()))?;
        let idempotency_key = Some(request.idempotency_key).filter(|key| !key.is_empty());
        if let Some(key) = &idempotency_key
            && key.len() > MAX_IDEMPOTENCY_KEY_BYTES
        {
            return Err(ApiError::InvalidArgument(format!(
                "idempotency_key is {} bytes, longer than {MAX_IDEMPOTENCY_KEY_BYTES}",
                key.len()
            )));
        }
        let started = start_or_find_run(
            self.store.as_ref(),
            &self.coordinator,
            RunRequest {
                namespace: &namespace,
                workflow_name: &request.workflow_name,
                workflow_version: &request.workflow_version,
                input_context_json: input,
                idempotency_key,
            },
        )
        .await?;
        Ok(pb::StartRunResponse {
            run_id: started.run_id,
            workflow_version: started.workflow_version,
            created: started.created,
        })
    }

    async fn get(&self, request: Request<pb::GetRunRequest>) -> ApiResult<pb::GetRunResponse> {
        let namespace = namespace_of(&request)?;
        let pb::GetRunRequest {
            run_id,
            omit_contexts,
            instances_from,
            max_instances,
        } = request.into_inner();
        if run_id.is_empty() {
            return Err(ApiError::InvalidArgument("run_id is missing".to_owned()));
        }
        check_no_nul("run_id", &run_id)?;
        let detail = self.store.get_run(&namespace, &run_id).await?;
        let context_json = match &detail.run.final_context_json {
            Some(final_context) => final_context.clone(),
            None => {
                let positions: std::collections::HashMap<&str, usize> = detail
                    .tasks
                    .iter()
                    .map(|task| (task.task_id.as_str(), task.position as usize))
                    .collect();
                // Instances' writes are not part of the context; their
                // mapped task's gathered output is.
                let deltas = detail
                    .deltas
                    .iter()
                    .filter(|delta| parse_instance_key(&delta.task_id).is_none())
                    .map(|delta| {
                        (
                            positions
                                .get(delta.task_id.as_str())
                                .copied()
                                .unwrap_or(usize::MAX),
                            delta.set_json.clone(),
                            delta.removed_keys.clone(),
                        )
                    });
                context_from_stored(&detail.run.input_context_json, deltas)
                    .map_err(|error| {
                        ApiError::Store(StoreError::Corrupt(format!(
                            "context of run {run_id}: {error}"
                        )))
                    })?
                    .to_json()
            }
        };
        let mut run = run_detail_to_proto(&detail, context_json);
        self.add_waiting_reasons(&namespace, &mut run).await?;
        let window = InstanceWindow {
            from: instances_from,
            max: max_instances,
        };
        fit_run(&mut run, window, omit_contexts, self.answer_budget());
        Ok(pb::GetRunResponse { run: Some(run) })
    }

    /// Says why each READY task waits, as the coordinator sees it now. A
    /// task it has assigned meanwhile keeps no reason.
    async fn add_waiting_reasons(&self, namespace: &str, run: &mut pb::Run) -> ApiResult<()> {
        let ready = pb::TaskState::Ready as i32;
        let is_ready = |task: &pb::TaskRun| task.state == ready;
        if !run
            .tasks
            .iter()
            .any(|task| is_ready(task) || task.instances.iter().any(is_ready))
        {
            return Ok(());
        }
        let waits = self.coordinator.waiting_reasons(namespace, &run.id).await?;
        for wait in waits {
            let Some(task) = run
                .tasks
                .iter_mut()
                .find(|task| task.task_id == wait.task_id)
            else {
                continue;
            };
            // Instances are stored in element order, one per index.
            let target = match wait.map_index {
                None => Some(task),
                Some(index) => task.instances.get_mut(index as usize),
            };
            if let Some(target) = target.filter(|target| target.state == ready) {
                target.waiting_reason = waiting_reason_to_proto(wait.reason) as i32;
                target.waiting_message = wait.message;
            }
        }
        Ok(())
    }

    async fn list(&self, request: Request<pb::ListRunsRequest>) -> ApiResult<pb::ListRunsResponse> {
        let namespace = namespace_of(&request)?;
        let request = request.into_inner();
        check_no_nul("workflow_name", &request.workflow_name)?;
        let limit = page_size(request.page_size);
        let filter = RunFilter {
            workflow_name: Some(request.workflow_name).filter(|name| !name.is_empty()),
            status: run_status_from_proto(request.status)?,
            before_id: decode_page_token(&request.page_token)?,
            limit: limit + 1,
        };
        let mut runs = self.store.list_runs(&namespace, &filter).await?;
        let next_page_token = if runs.len() > limit as usize {
            runs.truncate(limit as usize);
            runs.last()
                .map(|run| encode_page_token(&run.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListRunsResponse {
            runs: {
                let mut budget = self.answer_budget();
                runs.iter()
                    .map(|run| {
                        let mut run = run_summary_to_proto(run);
                        fit_run_contexts(&mut run, &mut budget);
                        run
                    })
                    .collect()
            },
            next_page_token,
        })
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> ApiResult<pb::CancelRunResponse> {
        let namespace = namespace_of(&request)?;
        let run_id = request.into_inner().run_id;
        if run_id.is_empty() {
            return Err(ApiError::InvalidArgument("run_id is missing".to_owned()));
        }
        check_no_nul("run_id", &run_id)?;
        match self.coordinator.cancel_run(&namespace, &run_id).await? {
            CancelOutcome::Cancelled => Ok(pb::CancelRunResponse {
                status: run_status_to_proto(RunStatus::Cancelled) as i32,
            }),
            CancelOutcome::NotActive => {
                let run = self.store.get_run(&namespace, &run_id).await?.run;
                Err(ApiError::FailedPrecondition(if run.status.is_terminal() {
                    format!("run {run_id} is already {}", run.status.as_str())
                } else {
                    format!("run {run_id} is not active on this server")
                }))
            }
        }
    }

    async fn retry(
        &self,
        request: Request<pb::RetryRunRequest>,
    ) -> ApiResult<pb::RetryRunResponse> {
        let namespace = namespace_of(&request)?;
        let request = request.into_inner();
        if request.run_id.is_empty() {
            return Err(ApiError::InvalidArgument("run_id is missing".to_owned()));
        }
        check_no_nul("run_id", &request.run_id)?;
        check_no_nul("from_task", &request.from_task)?;
        check_no_nul("request_id", &request.request_id)?;
        if request.request_id.len() > MAX_IDEMPOTENCY_KEY_BYTES {
            return Err(ApiError::InvalidArgument(format!(
                "request_id is {} bytes, longer than {MAX_IDEMPOTENCY_KEY_BYTES}",
                request.request_id.len()
            )));
        }
        let retried = self
            .coordinator
            .retry_run(RetryRunCommand {
                namespace,
                run_id: request.run_id,
                from_task: Some(request.from_task).filter(|task| !task.is_empty()),
                request_id: Some(request.request_id).filter(|id| !id.is_empty()),
            })
            .await?;
        Ok(pb::RetryRunResponse {
            run_id: retried.run_id,
            status: run_status_to_proto(retried.status) as i32,
            retry_count: retried.retry_count,
            retried_task_ids: retried.retried_task_ids,
        })
    }

    async fn watch(
        &self,
        request: Request<pb::WatchRunRequest>,
    ) -> ApiResult<EventStream<pb::WatchRunResponse>> {
        let namespace = namespace_of(&request)?;
        let request = request.into_inner();
        if request.run_id.is_empty() {
            return Err(ApiError::InvalidArgument("run_id is missing".to_owned()));
        }
        check_no_nul("run_id", &request.run_id)?;
        let events = self
            .events
            .watch_run(&namespace, &request.run_id, request.after_sequence)
            .await?;
        Ok(event_stream(events, |event| pb::WatchRunResponse {
            event: Some(event_to_proto(event)),
        }))
    }

    async fn watch_namespace(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> ApiResult<EventStream<pb::WatchEventsResponse>> {
        let namespace = namespace_of(&request)?;
        let request = request.into_inner();
        check_filter_list("workflow_names", &request.workflow_names)?;
        check_filter_list("run_ids", &request.run_ids)?;
        check_filter_size("types", request.types.len())?;
        let filter = EventFilter {
            workflow_names: request.workflow_names,
            run_ids: request.run_ids,
            types: request
                .types
                .into_iter()
                .map(event_type_from_proto)
                .collect::<Result<_, _>>()?,
        };
        let start = match (request.from_now, request.after_cursor) {
            (false, after_cursor) => WatchStart::After(after_cursor),
            (true, 0) => WatchStart::Now,
            (true, after_cursor) => {
                return Err(ApiError::OutOfRange(format!(
                    "from_now starts at the current end, so after_cursor must be 0, got {after_cursor}"
                )));
            }
        };
        let events = self
            .events
            .watch_namespace(&namespace, filter, start)
            .await?;
        Ok(event_stream(events, |event| pb::WatchEventsResponse {
            event: Some(event_to_proto(event)),
        }))
    }
}

/// A filter list must be short enough to bind into one query, and an empty
/// value could only ever match nothing, which is a mistake worth reporting.
fn check_filter_list(field: &str, values: &[String]) -> ApiResult<()> {
    check_filter_size(field, values.len())?;
    if let Some(index) = values.iter().position(String::is_empty) {
        return Err(ApiError::InvalidArgument(format!(
            "{field}[{index}] is empty"
        )));
    }
    for (index, value) in values.iter().enumerate() {
        check_no_nul(&format!("{field}[{index}]"), value)?;
    }
    Ok(())
}

fn check_filter_size(field: &str, count: usize) -> ApiResult<()> {
    if count > MAX_FILTER_VALUES {
        return Err(ApiError::ResourceExhausted(format!(
            "{field} has {count} values, over the limit of {MAX_FILTER_VALUES} by {}",
            count - MAX_FILTER_VALUES
        )));
    }
    Ok(())
}

/// The response stream of a watcher: each event converted, an error turned
/// into the status that ends the stream. The watcher's queue is bounded, so
/// the stream holds at most that many events.
fn event_stream<T>(
    events: tokio::sync::mpsc::Receiver<WatchItem>,
    convert: fn(&EventRecord) -> T,
) -> EventStream<T>
where
    T: Send + 'static,
{
    Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(events).map(move |item| match item {
            Ok(event) => Ok(convert(&event)),
            Err(error) => Err(Status::from(ApiError::from(error))),
        }),
    )
}

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl RunService for RunApi {
    async fn start_run(
        &self,
        request: Request<pb::StartRunRequest>,
    ) -> Result<Response<pb::StartRunResponse>, Status> {
        Ok(Response::new(self.start(request).await?))
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::GetRunResponse>, Status> {
        Ok(Response::new(self.get(request).await?))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    async fn cancel_run(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> Result<Response<pb::CancelRunResponse>, Status> {
        Ok(Response::new(self.cancel(request).await?))
    }

    async fn retry_run(
        &self,
        request: Request<pb::RetryRunRequest>,
    ) -> Result<Response<pb::RetryRunResponse>, Status> {
        Ok(Response::new(self.retry(request).await?))
    }

    type WatchRunStream = EventStream<pb::WatchRunResponse>;

    async fn watch_run(
        &self,
        request: Request<pb::WatchRunRequest>,
    ) -> Result<Response<Self::WatchRunStream>, Status> {
        Ok(Response::new(self.watch(request).await?))
    }

    type WatchEventsStream = EventStream<pb::WatchEventsResponse>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        Ok(Response::new(self.watch_namespace(request).await?))
    }
}
