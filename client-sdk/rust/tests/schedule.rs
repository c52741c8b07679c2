//! The schedule methods of `Client` against the real server started
//! in-process, with the scheduler on a manual clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tributary::{CatchUpPolicy, Client, Error, NewSchedule, OverlapPolicy, Task, Workflow};
use tributary_server::schedules::ManualClock;
use tributary_server::schedules::clock::ClockOverride;

use common::{LIMIT, TestServer};

/// 2026-01-10T00:00:00Z.
const T0: i64 = 1_768_003_200_000;
const HOUR: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_list_pause_resume_and_delete_a_schedule_that_fires() {
    let clock = ManualClock::new(T0);
    let server = {
        let clock = clock.clone();
        TestServer::start_with(move |config| {
            config.schedule_clock = Some(ClockOverride(Arc::new(clock)));
        })
        .await
    };
    let client = Client::connect(server.url()).await.expect("connects");
    let workflow = Workflow::new("etl").task(Task::new("a", |_| Box::pin(async { Ok(()) })));
    client
        .register_workflow(&workflow)
        .await
        .expect("registers");

    let created = client
        .create_schedule(
            &NewSchedule::new("hourly", "etl", "0 * * * *")
                .time_zone("Europe/Paris")
                .input(json!({"n": 1}))
                .overlap(OverlapPolicy::Allow)
                .catch_up(CatchUpPolicy::All { max: 3 }),
        )
        .await
        .expect("creates");
    assert_eq!(created.next_fire_times_ms[..2], [T0 + HOUR, T0 + 2 * HOUR]);
    assert_eq!(created.catch_up, CatchUpPolicy::All { max: 3 });
    assert_eq!(created.input, json!({"n": 1}));
    assert_eq!(created.last_run_id, None);

    clock.set(T0 + HOUR);
    let deadline = tokio::time::Instant::now() + LIMIT;
    let fired = loop {
        let schedule = client.get_schedule("hourly", 3).await.expect("gets");
        if schedule.last_run_id.is_some() {
            break schedule;
        }
        assert!(tokio::time::Instant::now() < deadline, "never fired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(fired.last_fire_time_ms, Some(T0 + HOUR));
    assert_eq!(fired.next_fire_times_ms.len(), 3);
    let run = client
        .get_run(fired.last_run_id.as_deref().expect("run"))
        .await
        .expect("run");
    assert_eq!(run.idempotency_key, "schedule:hourly:2026-01-10T01:00:00Z");

    let paused = client.pause_schedule("hourly").await.expect("pauses");
    assert!(paused.paused && paused.next_fire_times_ms.is_empty());
    let resumed = client.resume_schedule("hourly").await.expect("resumes");
    assert!(!resumed.paused);
    let listed = client.list_schedules().await.expect("lists");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].schedule_id, "hourly");

    client.delete_schedule("hourly").await.expect("deletes");
    match client.get_schedule("hourly", 0).await {
        Err(Error::Status(status)) => assert_eq!(status.code(), tonic::Code::NotFound),
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    match client
        .create_schedule(&NewSchedule::new("bad", "etl", "* * *"))
        .await
    {
        Err(Error::Status(status)) => {
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().contains("invalid cron expression"));
        }
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
}
