//! `tributary.v1.ScheduleService`: create, read, list, pause, resume and
//! delete schedules. Firing is the scheduler's (`schedules/`); every change
//! here wakes it.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tributary_core::{is_valid_identifier, shown};
use tributary_proto::timestamp_from_unix_ms;
use tributary_proto::v1 as pb;
use tributary_proto::v1::schedule_service_server::ScheduleService;

use super::convert::{decode_page_token, encode_page_token, page_size};
use super::error::{ApiError, ApiResult};
use super::namespace::namespace_of;
use super::text::check_no_nul;
use crate::engine::context::Context;
use crate::engine::schedule::{
    CatchUpKind, CatchUpPolicy, CronSchedule, OverlapPolicy, catch_up_policy,
};
use crate::schedules::{ScheduleClock, SchedulerWake};
use crate::store::{ScheduleProgress, Store, StoredSchedule, VersionSelector};

/// Next fire times in an answer when the request asks for none.
const DEFAULT_NEXT_FIRES: u32 = 5;
/// Longest cron expression or time zone name accepted, in bytes.
const MAX_SPEC_FIELD_BYTES: usize = 256;
/// Most next fire times one answer lists.
const MAX_NEXT_FIRES: u32 = 100;

pub struct ScheduleApi {
    store: Arc<dyn Store>,
    wake: SchedulerWake,
    /// The scheduler's clock: creation and resumption times are its times.
    clock: Arc<dyn ScheduleClock>,
    max_context_bytes: usize,
}

impl ScheduleApi {
    pub fn new(
        store: Arc<dyn Store>,
        wake: SchedulerWake,
        clock: Arc<dyn ScheduleClock>,
        max_context_bytes: usize,
    ) -> ScheduleApi {
        ScheduleApi {
            store,
            wake,
            clock,
            max_context_bytes,
        }
    }

    async fn create(
        &self,
        request: Request<pb::CreateScheduleRequest>,
    ) -> ApiResult<pb::CreateScheduleResponse> {
        let namespace = namespace_of(&request)?;
        let request = request.into_inner();
        check_schedule_id(&request.schedule_id)?;
        for (field, value) in [
            ("workflow_name", &request.workflow_name),
            ("workflow_version", &request.workflow_version),
            ("cron", &request.cron),
            ("time_zone", &request.time_zone),
            ("input_context_json", &request.input_context_json),
        ] {
            check_no_nul(field, value)?;
        }
        if request.workflow_name.is_empty() {
            return Err(ApiError::InvalidArgument(
                "workflow_name is missing".to_owned(),
            ));
        }
        if request.cron.trim().is_empty() {
            return Err(ApiError::InvalidArgument("cron is missing".to_owned()));
        }
        for (field, value) in [("cron", &request.cron), ("time_zone", &request.time_zone)] {
            if value.len() > MAX_SPEC_FIELD_BYTES {
                return Err(ApiError::InvalidArgument(format!(
                    "{field} is {} bytes, longer than {MAX_SPEC_FIELD_BYTES}",
                    value.len()
                )));
            }
        }
        let time_zone = if request.time_zone.is_empty() {
            "UTC".to_owned()
        } else {
            request.time_zone
        };
        CronSchedule::parse(&request.cron, &time_zone)
            .map_err(|error| ApiError::InvalidArgument(error.to_string()))?;
        let overlap = overlap_from_proto(request.overlap_policy)?;
        let catch_up = catch_up_from_proto(request.catch_up_policy, request.max_catch_up)?;
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
        Context::from_input(&input)
            .map_err(|error| ApiError::InvalidArgument(error.to_string()))?;
        let selector = if request.workflow_version.is_empty() {
            VersionSelector::Latest
        } else {
            VersionSelector::Version(request.workflow_version.clone())
        };
        self.store
            .get_workflow(&namespace, &request.workflow_name, &selector)
            .await?;
        let now_ms = self.clock.now_ms();
        let schedule = StoredSchedule {
            namespace,
            schedule_id: request.schedule_id,
            workflow_name: request.workflow_name,
            workflow_version: request.workflow_version,
            cron: request.cron,
            time_zone,
            input_context_json: input,
            overlap,
            catch_up,
            paused: request.paused,
            created_at_ms: now_ms,
            progress: ScheduleProgress {
                cursor_ms: now_ms,
                ..ScheduleProgress::default()
            },
        };
        if !self.store.insert_schedule(&schedule).await? {
            return Err(ApiError::AlreadyExists(format!(
                "schedule {} already exists",
                shown(&schedule.schedule_id)
            )));
        }
        tracing::info!(
            namespace = schedule.namespace,
            schedule_id = schedule.schedule_id,
            cron = schedule.cron,
            time_zone = schedule.time_zone,
            "schedule created"
        );
        self.wake.wake();
        Ok(pb::CreateScheduleResponse {
            schedule: Some(self.to_proto(&schedule, DEFAULT_NEXT_FIRES)),
        })
    }

    async fn get(
        &self,
        request: Request<pb::GetScheduleRequest>,
    ) -> ApiResult<pb::GetScheduleResponse> {
        let namespace = namespace_of(&request)?;
        let request = request.into_inner();
        let schedule_id = named_schedule(&request.schedule_id)?;
        let count = match request.next_fire_count {
            0 => DEFAULT_NEXT_FIRES,
            count => count.min(MAX_NEXT_FIRES),
        };
        let schedule = self.store.get_schedule(&namespace, schedule_id).await?;
        Ok(pb::GetScheduleResponse {
            schedule: Some(self.to_proto(&schedule, count)),
        })
    }

    async fn list(
        &self,
        request: Request<pb::ListSchedulesRequest>,
    ) -> ApiResult<pb::ListSchedulesResponse> {
        let namespace = namespace_of(&request)?;
        let request = request.into_inner();
        let after_id = decode_page_token(&request.page_token)?.unwrap_or_default();
        let limit = page_size(request.page_size);
        let mut schedules = self
            .store
            .list_schedules(&namespace, &after_id, limit + 1)
            .await?;
        let next_page_token = if schedules.len() > limit as usize {
            schedules.truncate(limit as usize);
            schedules
                .last()
                .map(|last| encode_page_token(&last.schedule_id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListSchedulesResponse {
            schedules: schedules
                .iter()
                .map(|schedule| self.to_proto(schedule, 1))
                .collect(),
            next_page_token,
        })
    }

    /// Pauses, or with `resume` resumes, and answers the schedule as it is
    /// afterwards.
    async fn set_paused(
        &self,
        namespace: &str,
        schedule_id: &str,
        resume: bool,
    ) -> ApiResult<pb::Schedule> {
        let schedule_id = named_schedule(schedule_id)?;
        let resume_at_ms = resume.then(|| self.clock.now_ms());
        self.store
            .set_schedule_paused(namespace, schedule_id, resume_at_ms)
            .await?;
        let schedule = self.store.get_schedule(namespace, schedule_id).await?;
        tracing::info!(
            namespace,
            schedule_id,
            paused = schedule.paused,
            "schedule paused or resumed"
        );
        self.wake.wake();
        Ok(self.to_proto(&schedule, DEFAULT_NEXT_FIRES))
    }

    async fn delete(&self, request: Request<pb::DeleteScheduleRequest>) -> ApiResult<()> {
        let namespace = namespace_of(&request)?;
        let schedule_id = request.into_inner().schedule_id;
        let schedule_id = named_schedule(&schedule_id)?;
        self.store.delete_schedule(&namespace, schedule_id).await?;
        tracing::info!(namespace, schedule_id, "schedule deleted");
        self.wake.wake();
        Ok(())
    }

    fn to_proto(&self, schedule: &StoredSchedule, next_fires: u32) -> pb::Schedule {
        let progress = &schedule.progress;
        let next_fire_times = match CronSchedule::parse(&schedule.cron, &schedule.time_zone) {
            Ok(cron) if !schedule.paused => cron
                .upcoming(
                    progress.cursor_ms.max(self.clock.now_ms()),
                    next_fires as usize,
                )
                .into_iter()
                .map(timestamp_from_unix_ms)
                .collect(),
            _ => Vec::new(),
        };
        pb::Schedule {
            schedule_id: schedule.schedule_id.clone(),
            workflow_name: schedule.workflow_name.clone(),
            workflow_version: schedule.workflow_version.clone(),
            cron: schedule.cron.clone(),
            time_zone: schedule.time_zone.clone(),
            input_context_json: schedule.input_context_json.clone(),
            overlap_policy: overlap_to_proto(schedule.overlap) as i32,
            catch_up_policy: catch_up_to_proto(schedule.catch_up) as i32,
            max_catch_up: schedule.catch_up.max_catch_up(),
            paused: schedule.paused,
            created_at: Some(timestamp_from_unix_ms(schedule.created_at_ms)),
            next_fire_times,
            last_fire_time: progress.last_fire_ms.map(timestamp_from_unix_ms),
            last_run_id: progress.last_run_id.clone().unwrap_or_default(),
            queued_fire_time: progress.queued_fire_ms.map(timestamp_from_unix_ms),
            last_error: progress.last_error.clone().unwrap_or_default(),
            fires_handled_through: Some(timestamp_from_unix_ms(progress.cursor_ms)),
        }
    }
}

fn check_schedule_id(schedule_id: &str) -> ApiResult<()> {
    if schedule_id.is_empty() {
        return Err(ApiError::InvalidArgument(
            "schedule_id is missing".to_owned(),
        ));
    }
    if !is_valid_identifier(schedule_id) {
        return Err(ApiError::InvalidArgument(format!(
            "invalid schedule_id {}: must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter",
            shown(schedule_id)
        )));
    }
    Ok(())
}

/// A schedule id a request names; an invalid one names no schedule.
fn named_schedule(schedule_id: &str) -> ApiResult<&str> {
    check_schedule_id(schedule_id)?;
    Ok(schedule_id)
}

fn overlap_from_proto(value: i32) -> ApiResult<OverlapPolicy> {
    match pb::OverlapPolicy::try_from(value) {
        Ok(pb::OverlapPolicy::Unspecified | pb::OverlapPolicy::Skip) => Ok(OverlapPolicy::Skip),
        Ok(pb::OverlapPolicy::Queue) => Ok(OverlapPolicy::Queue),
        Ok(pb::OverlapPolicy::Allow) => Ok(OverlapPolicy::Allow),
        Err(_) => Err(ApiError::InvalidArgument(format!(
            "unknown overlap_policy {value}"
        ))),
    }
}

fn overlap_to_proto(overlap: OverlapPolicy) -> pb::OverlapPolicy {
    match overlap {
        OverlapPolicy::Skip => pb::OverlapPolicy::Skip,
        OverlapPolicy::Queue => pb::OverlapPolicy::Queue,
        OverlapPolicy::Allow => pb::OverlapPolicy::Allow,
    }
}

fn catch_up_from_proto(value: i32, max_catch_up: u32) -> ApiResult<CatchUpPolicy> {
    let kind = match pb::CatchUpPolicy::try_from(value) {
        Ok(pb::CatchUpPolicy::Unspecified | pb::CatchUpPolicy::None) => CatchUpKind::None,
        Ok(pb::CatchUpPolicy::Last) => CatchUpKind::Last,
        Ok(pb::CatchUpPolicy::All) => CatchUpKind::All,
        Err(_) => {
            return Err(ApiError::InvalidArgument(format!(
                "unknown catch_up_policy {value}"
            )));
        }
    };
    catch_up_policy(kind, max_catch_up)
        .map_err(|error| ApiError::InvalidArgument(error.to_string()))
}

fn catch_up_to_proto(catch_up: CatchUpPolicy) -> pb::CatchUpPolicy {
    match catch_up.kind() {
        CatchUpKind::None => pb::CatchUpPolicy::None,
        CatchUpKind::Last => pb::CatchUpPolicy::Last,
        CatchUpKind::All => pb::CatchUpPolicy::All,
    }
}

#[tonic::async_trait]
impl ScheduleService for ScheduleApi {
    async fn create_schedule(
        &self,
        request: Request<pb::CreateScheduleRequest>,
    ) -> Result<Response<pb::CreateScheduleResponse>, Status> {
        Ok(Response::new(self.create(request).await?))
    }

    async fn get_schedule(
        &self,
        request: Request<pb::GetScheduleRequest>,
    ) -> Result<Response<pb::GetScheduleResponse>, Status> {
        Ok(Response::new(self.get(request).await?))
    }

    async fn list_schedules(
        &self,
        request: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    async fn pause_schedule(
        &self,
        request: Request<pb::PauseScheduleRequest>,
    ) -> Result<Response<pb::PauseScheduleResponse>, Status> {
        let namespace = namespace_of(&request)?;
        let schedule = self
            .set_paused(&namespace, &request.into_inner().schedule_id, false)
            .await?;
        Ok(Response::new(pb::PauseScheduleResponse {
            schedule: Some(schedule),
        }))
    }

    async fn resume_schedule(
        &self,
        request: Request<pb::ResumeScheduleRequest>,
    ) -> Result<Response<pb::ResumeScheduleResponse>, Status> {
        let namespace = namespace_of(&request)?;
        let schedule = self
            .set_paused(&namespace, &request.into_inner().schedule_id, true)
            .await?;
        Ok(Response::new(pb::ResumeScheduleResponse {
            schedule: Some(schedule),
        }))
    }

    async fn delete_schedule(
        &self,
        request: Request<pb::DeleteScheduleRequest>,
    ) -> Result<Response<pb::DeleteScheduleResponse>, Status> {
        self.delete(request).await?;
        Ok(Response::new(pb::DeleteScheduleResponse {}))
    }
}
