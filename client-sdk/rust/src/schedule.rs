//! Schedules: [`Client::create_schedule`] and its siblings start runs of a
//! workflow at the times a cron expression names (docs/schedules.md).

use serde_json::Value;
use tributary_proto::unix_ms_from_timestamp;
use tributary_proto::v1 as pb;

use crate::client::Client;
use crate::error::Error;

/// What a fire does while the run the schedule started last is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlapPolicy {
    /// The fire is dropped.
    #[default]
    Skip,
    /// The fire waits for the active run to end; at most one waits.
    Queue,
    /// The fire starts a run anyway.
    Allow,
}

/// Which fire times missed while the server was down are fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatchUpPolicy {
    /// None of them.
    #[default]
    None,
    /// The latest one only.
    Last,
    /// Every one, oldest first, but at most the latest `max` (1-100).
    All {
        /// The most missed fire times fired.
        max: u32,
    },
}

/// A schedule to create.
///
/// ```
/// let nightly = tributary::NewSchedule::new("nightly", "etl", "30 2 * * *")
///     .time_zone("Europe/Paris")
///     .input(serde_json::json!({"source": "nightly"}))
///     .overlap(tributary::OverlapPolicy::Queue)
///     .catch_up(tributary::CatchUpPolicy::Last);
/// assert_eq!(nightly.time_zone, "Europe/Paris");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewSchedule {
    /// The schedule's id (the rules of workflow names).
    pub schedule_id: String,
    /// The workflow to start runs of.
    pub workflow_name: String,
    /// A pinned version; `None` starts the latest version at each fire.
    pub workflow_version: Option<String>,
    /// 5 fields: minute hour day-of-month month day-of-week.
    pub cron: String,
    /// An IANA time zone.
    pub time_zone: String,
    /// The input context of every run (a JSON object).
    pub input: Value,
    /// See [`OverlapPolicy`].
    pub overlap: OverlapPolicy,
    /// See [`CatchUpPolicy`].
    pub catch_up: CatchUpPolicy,
    /// Create it paused.
    pub paused: bool,
}

impl NewSchedule {
    /// A schedule in UTC with input `{}`, overlap SKIP and catch-up NONE.
    pub fn new(
        schedule_id: impl Into<String>,
        workflow_name: impl Into<String>,
        cron: impl Into<String>,
    ) -> NewSchedule {
        NewSchedule {
            schedule_id: schedule_id.into(),
            workflow_name: workflow_name.into(),
            workflow_version: None,
            cron: cron.into(),
            time_zone: "UTC".to_owned(),
            input: Value::Object(Default::default()),
            overlap: OverlapPolicy::Skip,
            catch_up: CatchUpPolicy::None,
            paused: false,
        }
    }

    /// The IANA time zone the cron expression is read in.
    pub fn time_zone(mut self, time_zone: impl Into<String>) -> NewSchedule {
        self.time_zone = time_zone.into();
        self
    }

    /// Pins a workflow version.
    pub fn version(mut self, version: impl Into<String>) -> NewSchedule {
        self.workflow_version = Some(version.into());
        self
    }

    /// The input context of every run.
    pub fn input(mut self, input: Value) -> NewSchedule {
        self.input = input;
        self
    }

    /// The overlap policy.
    pub fn overlap(mut self, overlap: OverlapPolicy) -> NewSchedule {
        self.overlap = overlap;
        self
    }

    /// The catch-up policy.
    pub fn catch_up(mut self, catch_up: CatchUpPolicy) -> NewSchedule {
        self.catch_up = catch_up;
        self
    }

    /// Creates it paused.
    pub fn paused(mut self, paused: bool) -> NewSchedule {
        self.paused = paused;
        self
    }
}

/// A schedule as the server reports it. Times are milliseconds since the
/// Unix epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The schedule's id.
    pub schedule_id: String,
    /// The workflow it starts runs of.
    pub workflow_name: String,
    /// The pinned version; `None` for the latest at each fire.
    pub workflow_version: Option<String>,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone.
    pub time_zone: String,
    /// The input context of every run.
    pub input: Value,
    /// The overlap policy.
    pub overlap: OverlapPolicy,
    /// The catch-up policy.
    pub catch_up: CatchUpPolicy,
    /// Whether it is paused.
    pub paused: bool,
    /// When it was created.
    pub created_at_ms: i64,
    /// The next fire times (none while paused).
    pub next_fire_times_ms: Vec<i64>,
    /// The fire time of the last run it started.
    pub last_fire_time_ms: Option<i64>,
    /// The last run it started.
    pub last_run_id: Option<String>,
    /// A fire time waiting for the active run to end (overlap QUEUE).
    pub queued_fire_time_ms: Option<i64>,
    /// Why the last fire that should have started a run did not.
    pub last_error: Option<String>,
    /// The latest fire time the scheduler has dealt with.
    pub fires_handled_through_ms: Option<i64>,
}

impl Schedule {
    fn from_proto(schedule: pb::Schedule) -> Result<Schedule, Error> {
        let input = serde_json::from_str(&schedule.input_context_json)
            .map_err(|error| Error::Protocol(format!("schedule input is not JSON: {error}")))?;
        let overlap = match schedule.overlap_policy() {
            pb::OverlapPolicy::Queue => OverlapPolicy::Queue,
            pb::OverlapPolicy::Allow => OverlapPolicy::Allow,
            _ => OverlapPolicy::Skip,
        };
        let catch_up = match schedule.catch_up_policy() {
            pb::CatchUpPolicy::Last => CatchUpPolicy::Last,
            pb::CatchUpPolicy::All => CatchUpPolicy::All {
                max: schedule.max_catch_up,
            },
            _ => CatchUpPolicy::None,
        };
        let non_empty = |text: String| Some(text).filter(|text| !text.is_empty());
        Ok(Schedule {
            input,
            overlap,
            catch_up,
            paused: schedule.paused,
            created_at_ms: schedule
                .created_at
                .as_ref()
                .map_or(0, unix_ms_from_timestamp),
            next_fire_times_ms: schedule
                .next_fire_times
                .iter()
                .map(unix_ms_from_timestamp)
                .collect(),
            last_fire_time_ms: schedule.last_fire_time.as_ref().map(unix_ms_from_timestamp),
            queued_fire_time_ms: schedule
                .queued_fire_time
                .as_ref()
                .map(unix_ms_from_timestamp),
            fires_handled_through_ms: schedule
                .fires_handled_through
                .as_ref()
                .map(unix_ms_from_timestamp),
            last_run_id: non_empty(schedule.last_run_id),
            last_error: non_empty(schedule.last_error),
            workflow_version: non_empty(schedule.workflow_version),
            schedule_id: schedule.schedule_id,
            workflow_name: schedule.workflow_name,
            cron: schedule.cron,
            time_zone: schedule.time_zone,
        })
    }
}

fn answered(schedule: Option<pb::Schedule>) -> Result<Schedule, Error> {
    Schedule::from_proto(
        schedule.ok_or_else(|| Error::Protocol("the answer holds no schedule".to_owned()))?,
    )
}

impl Client {
    /// Creates a schedule; it fires from now on. A bad cron expression,
    /// time zone or policy is `InvalidArgument`, an unknown workflow
    /// `NotFound`, a schedule id in use `AlreadyExists`.
    ///
    /// ```no_run
    /// # async fn f(client: tributary::Client) -> Result<(), tributary::Error> {
    /// let schedule = client
    ///     .create_schedule(&tributary::NewSchedule::new("hourly", "etl", "0 * * * *"))
    ///     .await?;
    /// println!("next at {:?}", schedule.next_fire_times_ms.first());
    /// # Ok(()) }
    /// ```
    pub async fn create_schedule(&self, schedule: &NewSchedule) -> Result<Schedule, Error> {
        let (catch_up_policy, max_catch_up) = match schedule.catch_up {
            CatchUpPolicy::None => (pb::CatchUpPolicy::None, 0),
            CatchUpPolicy::Last => (pb::CatchUpPolicy::Last, 0),
            CatchUpPolicy::All { max } => (pb::CatchUpPolicy::All, max),
        };
        let overlap_policy = match schedule.overlap {
            OverlapPolicy::Skip => pb::OverlapPolicy::Skip,
            OverlapPolicy::Queue => pb::OverlapPolicy::Queue,
            OverlapPolicy::Allow => pb::OverlapPolicy::Allow,
        };
        let response = self
            .schedules()
            .create_schedule(pb::CreateScheduleRequest {
                schedule_id: schedule.schedule_id.clone(),
                workflow_name: schedule.workflow_name.clone(),
                workflow_version: schedule.workflow_version.clone().unwrap_or_default(),
                cron: schedule.cron.clone(),
                time_zone: schedule.time_zone.clone(),
                input_context_json: schedule.input.to_string(),
                overlap_policy: overlap_policy.into(),
                catch_up_policy: catch_up_policy.into(),
                max_catch_up,
                paused: schedule.paused,
            })
            .await?;
        answered(response.into_inner().schedule)
    }

    /// A schedule with its next `next_fire_count` fire times (0: 5).
    pub async fn get_schedule(
        &self,
        schedule_id: &str,
        next_fire_count: u32,
    ) -> Result<Schedule, Error> {
        let response = self
            .schedules()
            .get_schedule(pb::GetScheduleRequest {
                schedule_id: schedule_id.to_owned(),
                next_fire_count,
            })
            .await?;
        answered(response.into_inner().schedule)
    }

    /// Every schedule of the namespace, by id.
    pub async fn list_schedules(&self) -> Result<Vec<Schedule>, Error> {
        let mut schedules = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .schedules()
                .list_schedules(pb::ListSchedulesRequest {
                    page_size: 1000,
                    page_token,
                })
                .await?
                .into_inner();
            for schedule in page.schedules {
                schedules.push(Schedule::from_proto(schedule)?);
            }
            if page.next_page_token.is_empty() {
                return Ok(schedules);
            }
            page_token = page.next_page_token;
        }
    }

    /// Pauses a schedule: fire times that pass while it is paused never
    /// fire.
    pub async fn pause_schedule(&self, schedule_id: &str) -> Result<Schedule, Error> {
        let response = self
            .schedules()
            .pause_schedule(pb::PauseScheduleRequest {
                schedule_id: schedule_id.to_owned(),
            })
            .await?;
        answered(response.into_inner().schedule)
    }

    /// Resumes a paused schedule from now on (the paused period is not
    /// caught up).
    pub async fn resume_schedule(&self, schedule_id: &str) -> Result<Schedule, Error> {
        let response = self
            .schedules()
            .resume_schedule(pb::ResumeScheduleRequest {
                schedule_id: schedule_id.to_owned(),
            })
            .await?;
        answered(response.into_inner().schedule)
    }

    /// Deletes a schedule; the runs it started stay.
    pub async fn delete_schedule(&self, schedule_id: &str) -> Result<(), Error> {
        self.schedules()
            .delete_schedule(pb::DeleteScheduleRequest {
                schedule_id: schedule_id.to_owned(),
            })
            .await?;
        Ok(())
    }
}
