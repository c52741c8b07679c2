//! Schedules: fires at the cron's times with derived idempotency keys,
//! pause and resume, the overlap and catch-up policies, bad input, and no
//! fire time started twice across restarts and a SIGKILL. The scheduler's
//! clock is a manual one the tests move; nothing waits for real time.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tributary_e2e::executor::{Outcome, TestExecutor, handler};
use tributary_e2e::{Namespace, TestDatabase, TestServer};
use tributary_proto::v1 as pb;
use tributary_proto::v1::run_service_client::RunServiceClient;
use tributary_proto::v1::schedule_service_client::ScheduleServiceClient;
use tributary_server::config::ServeConfig;
use tributary_server::schedules::ManualClock;
use tributary_server::schedules::clock::ClockOverride;

use crate::liveness::{ServerProcess, free_port};

const LIMIT: Duration = Duration::from_secs(60);

/// 2026-01-10T00:00:00Z.
const T0: i64 = 1_768_003_200_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

type Schedules = ScheduleServiceClient<InterceptedService<Channel, Namespace>>;

fn with_clock(clock: &ManualClock) -> impl FnOnce(&mut ServeConfig) + use<> {
    let clock = clock.clone();
    move |config: &mut ServeConfig| {
        config.schedule_clock = Some(ClockOverride(Arc::new(clock)));
    }
}

async fn schedules(server: &TestServer) -> Schedules {
    ScheduleServiceClient::with_interceptor(server.channel().await, Namespace::new("default"))
}

fn ms(timestamp: Option<&prost_types::Timestamp>) -> Option<i64> {
    timestamp.map(tributary_proto::unix_ms_from_timestamp)
}

fn hourly(schedule_id: &str, workflow: &str) -> pb::CreateScheduleRequest {
    pb::CreateScheduleRequest {
        schedule_id: schedule_id.to_owned(),
        workflow_name: workflow.to_owned(),
        cron: "0 * * * *".to_owned(),
        time_zone: "UTC".to_owned(),
        input_context_json: json!({"from": schedule_id}).to_string(),
        overlap_policy: pb::OverlapPolicy::Allow as i32,
        ..pb::CreateScheduleRequest::default()
    }
}

async fn create(client: &mut Schedules, request: pb::CreateScheduleRequest) -> pb::Schedule {
    client
        .create_schedule(request)
        .await
        .expect("creates")
        .into_inner()
        .schedule
        .expect("schedule")
}

async fn get(client: &mut Schedules, schedule_id: &str) -> pb::Schedule {
    client
        .get_schedule(pb::GetScheduleRequest {
            schedule_id: schedule_id.to_owned(),
            next_fire_count: 0,
        })
        .await
        .expect("exists")
        .into_inner()
        .schedule
        .expect("schedule")
}

/// Polls until the scheduler has dealt with the fire times up to
/// `through_ms` (the limit is a safety net, not an assertion about speed).
async fn handled(client: &mut Schedules, schedule_id: &str, through_ms: i64) -> pb::Schedule {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let schedule = get(client, schedule_id).await;
        if ms(schedule.fires_handled_through.as_ref()).unwrap_or(0) >= through_ms {
            return schedule;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "schedule {schedule_id} never got through {through_ms}: {schedule:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the schedule records `fire_ms` as its last fire.
async fn fired(client: &mut Schedules, schedule_id: &str, fire_ms: i64) -> pb::Schedule {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let schedule = get(client, schedule_id).await;
        if ms(schedule.last_fire_time.as_ref()) == Some(fire_ms) {
            return schedule;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "schedule {schedule_id} never recorded its fire at {fire_ms}: {schedule:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The idempotency keys of a workflow's runs, sorted.
async fn run_keys(channel: Channel, workflow: &str) -> Vec<String> {
    let mut client = RunServiceClient::with_interceptor(channel, Namespace::new("default"));
    let mut keys: Vec<String> = client
        .list_runs(pb::ListRunsRequest {
            workflow_name: workflow.to_owned(),
            ..pb::ListRunsRequest::default()
        })
        .await
        .expect("lists")
        .into_inner()
        .runs
        .into_iter()
        .map(|run| run.idempotency_key)
        .collect();
    keys.sort();
    keys
}

/// Polls until a workflow has `count` runs; returns their keys.
async fn wait_for_runs(channel: Channel, workflow: &str, count: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let keys = run_keys(channel.clone(), workflow).await;
        if keys.len() >= count {
            return keys;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{workflow} has runs {keys:?}, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn key(schedule_id: &str, hour: u32) -> String {
    format!("schedule:{schedule_id}:2026-01-10T{hour:02}:00:00Z")
}

fn one_task(name: &str) -> serde_json::Value {
    json!({"name": name, "tasks": [{"id": "a"}]})
}

#[tokio::test]
async fn a_schedule_fires_at_its_times_with_derived_idempotency_keys() {
    let clock = ManualClock::new(T0 + 30_000);
    let server = TestServer::start_with(with_clock(&clock)).await;
    server.register("default", one_task("w")).await;
    let mut client = schedules(&server).await;
    let created = create(&mut client, hourly("hourly", "w")).await;
    let next: Vec<i64> = created
        .next_fire_times
        .iter()
        .map(tributary_proto::unix_ms_from_timestamp)
        .collect();
    assert_eq!(
        next,
        (1..=5).map(|hour| T0 + hour * HOUR).collect::<Vec<_>>()
    );
    assert_eq!(created.overlap_policy(), pb::OverlapPolicy::Allow);
    assert_eq!(created.catch_up_policy(), pb::CatchUpPolicy::None);

    clock.set(T0 + HOUR);
    let schedule = handled(&mut client, "hourly", T0 + HOUR).await;
    assert_eq!(ms(schedule.last_fire_time.as_ref()), Some(T0 + HOUR));
    let run = server.get_run("default", &schedule.last_run_id).await;
    assert_eq!(run.idempotency_key, key("hourly", 1));
    assert_eq!(run.workflow_name, "w");
    let input: serde_json::Value = serde_json::from_str(&run.input_context_json).expect("JSON");
    assert_eq!(input, json!({"from": "hourly"}));

    clock.set(T0 + 2 * HOUR + 10_000);
    handled(&mut client, "hourly", T0 + 2 * HOUR).await;
    assert_eq!(
        run_keys(server.channel().await, "w").await,
        [key("hourly", 1), key("hourly", 2)]
    );
    let listed = client
        .list_schedules(pb::ListSchedulesRequest::default())
        .await
        .expect("lists")
        .into_inner()
        .schedules;
    assert_eq!(listed.len(), 1);
    assert_eq!(ms(listed[0].next_fire_times.first()), Some(T0 + 3 * HOUR));
    server.stop().await;
}

#[tokio::test]
async fn pause_stops_fires_and_resume_does_not_catch_up_the_paused_period() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start_with(with_clock(&clock)).await;
    server.register("default", one_task("w")).await;
    let mut client = schedules(&server).await;
    create(
        &mut client,
        pb::CreateScheduleRequest {
            catch_up_policy: pb::CatchUpPolicy::All as i32,
            max_catch_up: 10,
            ..hourly("paused", "w")
        },
    )
    .await;
    let paused = client
        .pause_schedule(pb::PauseScheduleRequest {
            schedule_id: "paused".to_owned(),
        })
        .await
        .expect("pauses")
        .into_inner()
        .schedule
        .expect("schedule");
    assert!(paused.paused);
    assert!(paused.next_fire_times.is_empty());

    clock.set(T0 + 3 * HOUR + 10_000);
    let resumed = client
        .resume_schedule(pb::ResumeScheduleRequest {
            schedule_id: "paused".to_owned(),
        })
        .await
        .expect("resumes")
        .into_inner()
        .schedule
        .expect("schedule");
    assert!(!resumed.paused);
    assert_eq!(
        ms(resumed.fires_handled_through.as_ref()),
        Some(T0 + 3 * HOUR + 10_000)
    );
    assert_eq!(ms(resumed.next_fire_times.first()), Some(T0 + 4 * HOUR));

    clock.set(T0 + 4 * HOUR);
    handled(&mut client, "paused", T0 + 4 * HOUR).await;
    assert_eq!(
        run_keys(server.channel().await, "w").await,
        [key("paused", 4)]
    );
    server.stop().await;
}

#[tokio::test]
async fn overlap_skip_drops_queue_waits_for_the_active_run_and_allow_starts() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start_with(with_clock(&clock)).await;
    let mut client = schedules(&server).await;
    for (policy, name) in [
        (pb::OverlapPolicy::Skip, "skip"),
        (pb::OverlapPolicy::Queue, "queue"),
        (pb::OverlapPolicy::Allow, "allow"),
    ] {
        server.register("default", one_task(name)).await;
        create(
            &mut client,
            pb::CreateScheduleRequest {
                overlap_policy: policy as i32,
                ..hourly(name, name)
            },
        )
        .await;
    }
    // No executor yet: every run stays PENDING, so active.
    for hour in 1..=3 {
        clock.set(T0 + hour * HOUR);
        for name in ["skip", "queue", "allow"] {
            handled(&mut client, name, T0 + hour * HOUR).await;
        }
    }
    let channel = server.channel().await;
    assert_eq!(run_keys(channel.clone(), "skip").await, [key("skip", 1)]);
    assert_eq!(run_keys(channel.clone(), "queue").await, [key("queue", 1)]);
    assert_eq!(
        run_keys(channel.clone(), "allow").await,
        [key("allow", 1), key("allow", 2), key("allow", 3)]
    );
    let queue = get(&mut client, "queue").await;
    assert_eq!(ms(queue.queued_fire_time.as_ref()), Some(T0 + 2 * HOUR));

    // Runs end: the queued fire (02:00, not the later 03:00) starts.
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["skip.a", "queue.a", "allow.a"],
        8,
        handler(|_| async { Outcome::set(json!({})) }),
    )
    .await;
    assert_eq!(
        wait_for_runs(channel.clone(), "queue", 2).await,
        [key("queue", 1), key("queue", 2)]
    );
    // The scheduler records a fire after its run starts: wait for the record.
    let queue = fired(&mut client, "queue", T0 + 2 * HOUR).await;
    assert_eq!(queue.queued_fire_time, None);
    assert_eq!(run_keys(channel, "skip").await, [key("skip", 1)]);
    server.stop().await;
}

#[tokio::test]
async fn after_downtime_none_fires_nothing_last_the_latest_and_all_up_to_its_bound() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start_with(with_clock(&clock)).await;
    let mut client = schedules(&server).await;
    for (policy, max, name) in [
        (pb::CatchUpPolicy::None, 0, "none"),
        (pb::CatchUpPolicy::Last, 0, "last"),
        (pb::CatchUpPolicy::All, 2, "all"),
    ] {
        server.register("default", one_task(name)).await;
        create(
            &mut client,
            pb::CreateScheduleRequest {
                catch_up_policy: policy as i32,
                max_catch_up: max,
                ..hourly(name, name)
            },
        )
        .await;
    }
    let database = server.stop().await;

    // Down from 00:00 to 05:30: 01:00 to 05:00 were missed.
    clock.set(T0 + 5 * HOUR + 30 * MINUTE);
    let server = TestServer::start_on(database, with_clock(&clock)).await;
    let mut client = schedules(&server).await;
    for name in ["none", "last", "all"] {
        handled(&mut client, name, T0 + 5 * HOUR).await;
    }
    let channel = server.channel().await;
    assert!(run_keys(channel.clone(), "none").await.is_empty());
    assert_eq!(run_keys(channel.clone(), "last").await, [key("last", 5)]);
    assert_eq!(
        run_keys(channel.clone(), "all").await,
        [key("all", 4), key("all", 5)]
    );

    // A restart at the same time deals with nothing again.
    let database = server.stop().await;
    let server = TestServer::start_on(database, with_clock(&clock)).await;
    let mut client = schedules(&server).await;
    clock.set(T0 + 6 * HOUR);
    handled(&mut client, "none", T0 + 6 * HOUR).await;
    let channel = server.channel().await;
    assert_eq!(run_keys(channel.clone(), "none").await, [key("none", 6)]);
    assert_eq!(
        wait_for_runs(channel.clone(), "last", 2).await,
        [key("last", 5), key("last", 6)]
    );
    assert_eq!(
        wait_for_runs(channel, "all", 3).await,
        [key("all", 4), key("all", 5), key("all", 6)]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_fire_time_that_already_started_a_run_finds_it_instead_of_starting_another() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start_with(with_clock(&clock)).await;
    server.register("default", one_task("w")).await;
    let mut client = schedules(&server).await;
    create(&mut client, hourly("again", "w")).await;
    clock.set(T0 + HOUR);
    let first = handled(&mut client, "again", T0 + HOUR).await;

    // The same schedule again, before 01:00: as if its progress had been
    // lost after the run started.
    client
        .delete_schedule(pb::DeleteScheduleRequest {
            schedule_id: "again".to_owned(),
        })
        .await
        .expect("deletes");
    clock.set(T0 + HOUR - MINUTE);
    create(&mut client, hourly("again", "w")).await;
    clock.set(T0 + HOUR);
    let second = handled(&mut client, "again", T0 + HOUR).await;
    assert_eq!(second.last_run_id, first.last_run_id);
    assert_eq!(second.last_error, "");
    assert_eq!(
        run_keys(server.channel().await, "w").await,
        [key("again", 1)]
    );
    server.stop().await;
}

async fn refused(client: &mut Schedules, request: pb::CreateScheduleRequest) -> tonic::Status {
    client.create_schedule(request).await.expect_err("refused")
}

#[tokio::test]
async fn bad_schedules_are_refused_naming_the_culprit() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start_with(with_clock(&clock)).await;
    server.register("default", one_task("w")).await;
    let mut client = schedules(&server).await;
    let cases = [
        (
            pb::CreateScheduleRequest {
                cron: "0 * * *".to_owned(),
                ..hourly("s", "w")
            },
            Code::InvalidArgument,
            "invalid cron expression \"0 * * *\"",
        ),
        (
            pb::CreateScheduleRequest {
                cron: "0 0 * * * *".to_owned(),
                ..hourly("s", "w")
            },
            Code::InvalidArgument,
            "invalid cron expression \"0 0 * * * *\"",
        ),
        (
            pb::CreateScheduleRequest {
                time_zone: "Mars/Olympus".to_owned(),
                ..hourly("s", "w")
            },
            Code::InvalidArgument,
            "unknown time zone \"Mars/Olympus\"",
        ),
        (
            hourly("s", "nope"),
            Code::NotFound,
            "workflow \"nope\" not found",
        ),
        (
            hourly("Bad Id", "w"),
            Code::InvalidArgument,
            "invalid schedule_id \"Bad Id\"",
        ),
        (
            pb::CreateScheduleRequest {
                catch_up_policy: pb::CatchUpPolicy::All as i32,
                max_catch_up: 0,
                ..hourly("s", "w")
            },
            Code::InvalidArgument,
            "max_catch_up 0 is out of range",
        ),
        (
            pb::CreateScheduleRequest {
                cron: "0 ".repeat(150),
                ..hourly("s", "w")
            },
            Code::InvalidArgument,
            "cron is 300 bytes, longer than 256",
        ),
        (
            pb::CreateScheduleRequest {
                input_context_json: "[1]".to_owned(),
                ..hourly("s", "w")
            },
            Code::InvalidArgument,
            "JSON object",
        ),
    ];
    for (request, code, message) in cases {
        let status = refused(&mut client, request).await;
        assert_eq!(status.code(), code, "{status:?}");
        assert!(
            status.message().contains(message),
            "{:?} does not contain {message:?}",
            status.message()
        );
    }
    create(&mut client, hourly("s", "w")).await;
    let status = refused(&mut client, hourly("s", "w")).await;
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(status.message(), "schedule \"s\" already exists");
    client
        .delete_schedule(pb::DeleteScheduleRequest {
            schedule_id: "s".to_owned(),
        })
        .await
        .expect("deletes");
    for status in [
        client
            .get_schedule(pb::GetScheduleRequest {
                schedule_id: "s".to_owned(),
                next_fire_count: 0,
            })
            .await
            .expect_err("gone"),
        client
            .pause_schedule(pb::PauseScheduleRequest {
                schedule_id: "s".to_owned(),
            })
            .await
            .expect_err("gone"),
        client
            .delete_schedule(pb::DeleteScheduleRequest {
                schedule_id: "s".to_owned(),
            })
            .await
            .expect_err("gone"),
    ] {
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "schedule \"s\" not found");
    }
    server.stop().await;
}

async fn process_schedules(server: &ServerProcess) -> Schedules {
    ScheduleServiceClient::with_interceptor(server.channel().await, Namespace::new("default"))
}

#[tokio::test]
async fn a_server_killed_and_restarted_never_fires_a_time_twice_and_catches_up() {
    let database = TestDatabase::fresh().await;
    let port = free_port();
    let clock_at = |at_ms: i64| at_ms.to_string();
    let start = |at_ms: i64| {
        let database = &database;
        let clock = clock_at(at_ms);
        async move {
            ServerProcess::start_with_env(
                database,
                port,
                &[("TRIBUTARY_TEST_SCHEDULE_CLOCK_MS", clock.as_str())],
            )
            .await
        }
    };
    let server = start(T0).await;
    server.register(one_task("w")).await;
    let mut client = process_schedules(&server).await;
    create(
        &mut client,
        pb::CreateScheduleRequest {
            catch_up_policy: pb::CatchUpPolicy::All as i32,
            max_catch_up: 10,
            ..hourly("crash", "w")
        },
    )
    .await;
    server.kill().await;

    let server = start(T0 + 2 * HOUR + 10_000).await;
    let mut client = process_schedules(&server).await;
    handled(&mut client, "crash", T0 + 2 * HOUR).await;
    assert_eq!(
        run_keys(server.channel().await, "w").await,
        [key("crash", 1), key("crash", 2)]
    );
    server.kill().await;

    // Killed after recording 02:00: the next server starts 03:00 only.
    let server = start(T0 + 3 * HOUR + 10_000).await;
    let mut client = process_schedules(&server).await;
    handled(&mut client, "crash", T0 + 3 * HOUR).await;
    assert_eq!(
        run_keys(server.channel().await, "w").await,
        [key("crash", 1), key("crash", 2), key("crash", 3)]
    );
    server.kill().await;
}

/// `tributary schedule ...`, as a process of the real binary.
async fn cli(arguments: &[&str]) -> (Option<i32>, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_test_server"))
        .arg("schedule")
        .args(arguments)
        .output()
        .await
        .expect("the CLI runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_creates_shows_lists_pauses_resumes_and_deletes_schedules() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start_with(with_clock(&clock)).await;
    server.register("default", one_task("etl")).await;
    let url = server.url();

    let (code, stdout, stderr) = cli(&[
        "create",
        "nightly",
        "etl",
        "30 2 * * *",
        "--time-zone",
        "Europe/Paris",
        "--input",
        r#"{"source": "nightly"}"#,
        "--overlap",
        "queue",
        "--catch-up",
        "all",
        "--max-catch-up",
        "3",
        "--json",
        "--server",
        &url,
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let created: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(created["overlap_policy"], "queue");
    assert_eq!(created["catch_up_policy"], "all");
    assert_eq!(created["max_catch_up"], 3);
    // 02:30 in Paris is 01:30 UTC in winter.
    assert_eq!(created["next_fire_times"][0], "2026-01-10T01:30:00Z");

    let (code, stdout, _) = cli(&["get", "nightly", "--next", "2", "--server", &url]).await;
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("cron       30 2 * * * in Europe/Paris"),
        "{stdout}"
    );
    assert!(
        stdout.contains("policies   overlap queue, catch-up all (at most 3)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("next fires 2026-01-10T01:30:00Z\n           2026-01-11T01:30:00Z"),
        "{stdout}"
    );

    let (code, stdout, _) = cli(&["list", "--server", &url]).await;
    assert_eq!(code, Some(0));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("SCHEDULE"), "{stdout}");
    assert!(
        lines[1].starts_with("nightly") && lines[1].contains("active"),
        "{stdout}"
    );

    let (code, stdout, _) = cli(&["pause", "nightly", "--json", "--server", &url]).await;
    assert_eq!(code, Some(0));
    let paused: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(paused["paused"], true);
    let (code, stdout, _) = cli(&["resume", "nightly", "--server", &url]).await;
    assert_eq!(code, Some(0));
    assert!(stdout.contains("paused     no"), "{stdout}");

    let (code, stdout, _) = cli(&["delete", "nightly", "--server", &url]).await;
    assert_eq!(code, Some(0));
    assert_eq!(stdout.trim(), "deleted schedule nightly");
    let (code, _, stderr) = cli(&["get", "nightly", "--server", &url]).await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("NotFound") && stderr.contains("schedule \"nightly\" not found"),
        "{stderr}"
    );
    let (code, _, stderr) = cli(&["create", "x", "etl", "61 * * * *", "--server", &url]).await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("InvalidArgument") && stderr.contains("invalid cron expression"),
        "{stderr}"
    );
    server.stop().await;
}
