//! `tributary schedule create|get|list|pause|resume|delete`: schedules,
//! through `ScheduleService`.

use std::process::ExitCode;

use serde_json::json;
use tributary_proto::unix_ms_from_timestamp;
use tributary_proto::v1 as pb;
use tributary_proto::v1::schedule_service_client::ScheduleServiceClient;

use super::CliError;
use super::client::ClientOptions;
use super::output::{Align, Table, say, time};

/// What a fire does while the previous run is still active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Overlap {
    Skip,
    Queue,
    Allow,
}

/// Which fire times missed during downtime fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CatchUp {
    None,
    Last,
    All,
}

#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule that starts runs of WORKFLOW at the times CRON
    /// names (5 fields: minute hour day-of-month month day-of-week).
    Create {
        /// The schedule's id (a-z, 0-9, _ and -, starting with a letter).
        schedule_id: String,
        /// The workflow to start runs of.
        workflow: String,
        /// The cron expression, e.g. "30 2 * * *".
        cron: String,
        /// The IANA time zone CRON is read in.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        /// Pin this workflow version; the latest at each fire otherwise.
        #[arg(long)]
        version: Option<String>,
        /// The input context of every run, a JSON object.
        #[arg(long, default_value = "{}")]
        input: String,
        /// What a fire does while the previous run is still active.
        #[arg(long, value_enum, default_value = "skip")]
        overlap: Overlap,
        /// Which fire times missed while the server was down fire.
        #[arg(long, value_enum, default_value = "none")]
        catch_up: CatchUp,
        /// With --catch-up all, the most missed fire times fired (1-100).
        #[arg(long, default_value_t = 10)]
        max_catch_up: u32,
        /// Create it paused.
        #[arg(long)]
        paused: bool,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Show a schedule and its next fire times.
    Get {
        schedule_id: String,
        /// How many next fire times to show (up to 100).
        #[arg(long, default_value_t = 5)]
        next: u32,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// List the schedules of the namespace.
    List {
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Stop a schedule from firing; times passed while paused never fire.
    Pause {
        schedule_id: String,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Fire again from now on (the paused period is not caught up).
    Resume {
        schedule_id: String,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Delete a schedule; the runs it started stay.
    Delete {
        schedule_id: String,
        #[command(flatten)]
        client: ClientOptions,
    },
}

fn overlap_name(value: i32) -> &'static str {
    match pb::OverlapPolicy::try_from(value) {
        Ok(pb::OverlapPolicy::Queue) => "queue",
        Ok(pb::OverlapPolicy::Allow) => "allow",
        _ => "skip",
    }
}

fn catch_up_name(value: i32) -> &'static str {
    match pb::CatchUpPolicy::try_from(value) {
        Ok(pb::CatchUpPolicy::Last) => "last",
        Ok(pb::CatchUpPolicy::All) => "all",
        _ => "none",
    }
}

fn time_of(timestamp: Option<&prost_types::Timestamp>) -> Option<String> {
    timestamp.map(|timestamp| time(unix_ms_from_timestamp(timestamp)))
}

fn schedule_json(schedule: &pb::Schedule) -> serde_json::Value {
    json!({
        "schedule_id": schedule.schedule_id,
        "workflow_name": schedule.workflow_name,
        "workflow_version": schedule.workflow_version,
        "cron": schedule.cron,
        "time_zone": schedule.time_zone,
        "input_context_json": schedule.input_context_json,
        "overlap_policy": overlap_name(schedule.overlap_policy),
        "catch_up_policy": catch_up_name(schedule.catch_up_policy),
        "max_catch_up": schedule.max_catch_up,
        "paused": schedule.paused,
        "created_at": time_of(schedule.created_at.as_ref()),
        "next_fire_times": schedule
            .next_fire_times
            .iter()
            .map(|timestamp| time(unix_ms_from_timestamp(timestamp)))
            .collect::<Vec<_>>(),
        "last_fire_time": time_of(schedule.last_fire_time.as_ref()),
        "last_run_id": schedule.last_run_id,
        "queued_fire_time": time_of(schedule.queued_fire_time.as_ref()),
        "last_error": schedule.last_error,
    })
}

fn print_schedule(schedule: &pb::Schedule) -> Result<(), CliError> {
    let dash = |text: Option<String>| text.unwrap_or_else(|| "-".to_owned());
    let version = if schedule.workflow_version.is_empty() {
        "latest"
    } else {
        &schedule.workflow_version
    };
    say!("schedule   {}", schedule.schedule_id);
    say!("workflow   {} ({version})", schedule.workflow_name);
    say!("cron       {} in {}", schedule.cron, schedule.time_zone);
    say!("input      {}", schedule.input_context_json);
    say!(
        "policies   overlap {}, catch-up {}{}",
        overlap_name(schedule.overlap_policy),
        catch_up_name(schedule.catch_up_policy),
        if schedule.max_catch_up > 0 {
            format!(" (at most {})", schedule.max_catch_up)
        } else {
            String::new()
        }
    );
    say!("paused     {}", if schedule.paused { "yes" } else { "no" });
    say!("created    {}", dash(time_of(schedule.created_at.as_ref())));
    say!(
        "last fire  {}{}",
        dash(time_of(schedule.last_fire_time.as_ref())),
        if schedule.last_run_id.is_empty() {
            String::new()
        } else {
            format!(" (run {})", schedule.last_run_id)
        }
    );
    if let Some(queued) = time_of(schedule.queued_fire_time.as_ref()) {
        say!("queued     {queued}");
    }
    if !schedule.last_error.is_empty() {
        say!("last error {}", schedule.last_error);
    }
    for (index, next) in schedule.next_fire_times.iter().enumerate() {
        let label = if index == 0 { "next fires" } else { "" };
        say!("{label:<10} {}", time(unix_ms_from_timestamp(next)));
    }
    Ok(())
}

fn print_one(client: &ClientOptions, schedule: Option<pb::Schedule>) -> Result<(), CliError> {
    let schedule = schedule.unwrap_or_default();
    if client.json {
        say!("{}", schedule_json(&schedule));
        Ok(())
    } else {
        print_schedule(&schedule)
    }
}

async fn service(
    client: &ClientOptions,
) -> Result<ScheduleServiceClient<super::client::NamespacedChannel>, CliError> {
    Ok(ScheduleServiceClient::new(
        client.namespaced_channel().await?,
    ))
}

pub async fn run(command: ScheduleCommand) -> Result<ExitCode, CliError> {
    match command {
        ScheduleCommand::Create {
            schedule_id,
            workflow,
            cron,
            time_zone,
            version,
            input,
            overlap,
            catch_up,
            max_catch_up,
            paused,
            client,
        } => {
            let overlap_policy = match overlap {
                Overlap::Skip => pb::OverlapPolicy::Skip,
                Overlap::Queue => pb::OverlapPolicy::Queue,
                Overlap::Allow => pb::OverlapPolicy::Allow,
            };
            let (catch_up_policy, max_catch_up) = match catch_up {
                CatchUp::None => (pb::CatchUpPolicy::None, 0),
                CatchUp::Last => (pb::CatchUpPolicy::Last, 0),
                CatchUp::All => (pb::CatchUpPolicy::All, max_catch_up),
            };
            let schedule = service(&client)
                .await?
                .create_schedule(pb::CreateScheduleRequest {
                    schedule_id,
                    workflow_name: workflow,
                    workflow_version: version.unwrap_or_default(),
                    cron,
                    time_zone,
                    input_context_json: input,
                    overlap_policy: overlap_policy as i32,
                    catch_up_policy: catch_up_policy as i32,
                    max_catch_up,
                    paused,
                })
                .await?
                .into_inner()
                .schedule;
            print_one(&client, schedule)?;
        }
        ScheduleCommand::Get {
            schedule_id,
            next,
            client,
        } => {
            let schedule = service(&client)
                .await?
                .get_schedule(pb::GetScheduleRequest {
                    schedule_id,
                    next_fire_count: next,
                })
                .await?
                .into_inner()
                .schedule;
            print_one(&client, schedule)?;
        }
        ScheduleCommand::List { client } => {
            let mut service = service(&client).await?;
            let mut schedules = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = service
                    .list_schedules(pb::ListSchedulesRequest {
                        page_size: 1000,
                        page_token,
                    })
                    .await?
                    .into_inner();
                schedules.extend(page.schedules);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if client.json {
                let values: Vec<_> = schedules.iter().map(schedule_json).collect();
                say!("{}", serde_json::Value::Array(values));
            } else {
                let mut table = Table::new(&[
                    ("SCHEDULE", Align::Left),
                    ("WORKFLOW", Align::Left),
                    ("CRON", Align::Left),
                    ("TIME ZONE", Align::Left),
                    ("STATE", Align::Left),
                    ("NEXT FIRE", Align::Left),
                    ("LAST FIRE", Align::Left),
                ]);
                for schedule in &schedules {
                    table.row(vec![
                        schedule.schedule_id.clone(),
                        schedule.workflow_name.clone(),
                        schedule.cron.clone(),
                        schedule.time_zone.clone(),
                        if schedule.paused { "paused" } else { "active" }.to_owned(),
                        time_of(schedule.next_fire_times.first()).unwrap_or_else(|| "-".into()),
                        time_of(schedule.last_fire_time.as_ref()).unwrap_or_else(|| "-".into()),
                    ]);
                }
                table.emit()?;
            }
        }
        ScheduleCommand::Pause {
            schedule_id,
            client,
        } => {
            let schedule = service(&client)
                .await?
                .pause_schedule(pb::PauseScheduleRequest { schedule_id })
                .await?
                .into_inner()
                .schedule;
            print_one(&client, schedule)?;
        }
        ScheduleCommand::Resume {
            schedule_id,
            client,
        } => {
            let schedule = service(&client)
                .await?
                .resume_schedule(pb::ResumeScheduleRequest { schedule_id })
                .await?
                .into_inner()
                .schedule;
            print_one(&client, schedule)?;
        }
        ScheduleCommand::Delete {
            schedule_id,
            client,
        } => {
            service(&client)
                .await?
                .delete_schedule(pb::DeleteScheduleRequest {
                    schedule_id: schedule_id.clone(),
                })
                .await?;
            if client.json {
                say!("{}", json!({ "deleted": schedule_id }));
            } else {
                say!("deleted schedule {schedule_id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
