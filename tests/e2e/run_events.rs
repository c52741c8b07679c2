//! The event streams over gRPC: `WatchRun` and `WatchEvents` replaying from
//! the database and following live events without a gap or a duplicate,
//! resuming from a sequence or a cursor (also across a restart), watchers
//! that do not read, and the retention job.
//!
//! Streams that never end on their own are read up to a barrier: an event
//! known to be the last one that can match (a run's RUN_FINISHED, or the
//! first event of a run started afterwards), so "nothing else arrived" is
//! proven by order, not by waiting.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, watch};
use tonic::Streaming;
use tributary_e2e::executor::{Outcome, TestExecutor, handler};
use tributary_e2e::{Namespace, TestServer, task};
use tributary_proto::v1 as pb;
use tributary_proto::v1::run_service_client::RunServiceClient;

/// A safety net so a broken stream fails the test instead of hanging it;
/// never an assertion about speed.
const LIMIT: Duration = Duration::from_secs(60);

const NS: &str = "default";

type Client = RunServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Namespace>,
>;

/// The fields that identify an event, for comparing streams.
type Key = (u64, String, u64, pb::RunEventType, String);

fn key(event: &pb::RunEvent) -> Key {
    (
        event.cursor,
        event.run_id.clone(),
        event.sequence,
        event.r#type(),
        event.task_id.clone(),
    )
}

fn keys(events: &[pb::RunEvent]) -> Vec<Key> {
    events.iter().map(key).collect()
}

/// A WatchEvents stream from the start on a connection with small windows,
/// for a test that leaves it unread for a while.
async fn stalled_watch_events(server: &TestServer) -> Streaming<pb::WatchEventsResponse> {
    narrow_client(server)
        .await
        .watch_events(after_cursor(0))
        .await
        .expect("watch accepted")
        .into_inner()
}

/// A WatchRun stream from the start on a connection with small windows.
async fn stalled_watch_run(server: &TestServer, run_id: &str) -> Streaming<pb::WatchRunResponse> {
    narrow_client(server)
        .await
        .watch_run(pb::WatchRunRequest {
            run_id: run_id.to_owned(),
            after_sequence: 0,
        })
        .await
        .expect("watch accepted")
        .into_inner()
}

async fn narrow_client(server: &TestServer) -> Client {
    RunServiceClient::with_interceptor(server.narrow_channel().await, Namespace::new(NS))
}

/// An executor serving `handler_names` whose every attempt succeeds at
/// once without writing anything.
async fn instant_executor(
    server: &TestServer,
    handler_names: &[impl AsRef<str>],
    capacity: u32,
) -> TestExecutor {
    let handler_names: Vec<&str> = handler_names.iter().map(AsRef::as_ref).collect();
    TestExecutor::connect(
        server.channel().await,
        NS,
        &handler_names,
        capacity,
        handler(|_| async { Outcome::set(json!({})) }),
    )
    .await
}

async fn watch_run(
    server: &TestServer,
    run_id: &str,
    after_sequence: u64,
) -> Streaming<pb::WatchRunResponse> {
    server
        .run_client(NS)
        .await
        .watch_run(pb::WatchRunRequest {
            run_id: run_id.to_owned(),
            after_sequence,
        })
        .await
        .expect("watch accepted")
        .into_inner()
}

async fn watch_events(
    server: &TestServer,
    request: pb::WatchEventsRequest,
) -> Streaming<pb::WatchEventsResponse> {
    server
        .run_client(NS)
        .await
        .watch_events(request)
        .await
        .expect("watch accepted")
        .into_inner()
}

fn after_cursor(cursor: u64) -> pb::WatchEventsRequest {
    pb::WatchEventsRequest {
        after_cursor: cursor,
        ..pb::WatchEventsRequest::default()
    }
}

/// Reads a WatchRun stream to its end.
async fn read_to_end(stream: &mut Streaming<pb::WatchRunResponse>) -> Vec<pb::RunEvent> {
    let read = async {
        let mut events = Vec::new();
        while let Some(response) = stream.message().await.expect("stream ok") {
            events.push(response.event.expect("event"));
        }
        events
    };
    tokio::time::timeout(LIMIT, read)
        .await
        .expect("the stream ended")
}

/// Reads a WatchEvents stream up to and including the first event that
/// satisfies `last`.
async fn read_until(
    stream: &mut Streaming<pb::WatchEventsResponse>,
    mut last: impl FnMut(&pb::RunEvent) -> bool,
) -> Vec<pb::RunEvent> {
    let read = async {
        let mut events = Vec::new();
        loop {
            let response = stream
                .message()
                .await
                .expect("stream ok")
                .expect("stream open");
            let event = response.event.expect("event");
            let done = last(&event);
            events.push(event);
            if done {
                return events;
            }
        }
    };
    tokio::time::timeout(LIMIT, read)
        .await
        .expect("the awaited event arrived")
}

/// Reads until the RUN_FINISHED of each of `run_ids` has arrived.
async fn read_until_finished(
    stream: &mut Streaming<pb::WatchEventsResponse>,
    run_ids: &[&str],
) -> Vec<pb::RunEvent> {
    let mut waiting: HashSet<String> = run_ids.iter().map(|id| (*id).to_owned()).collect();
    read_until(stream, |event| {
        if event.r#type() == pb::RunEventType::RunFinished {
            waiting.remove(&event.run_id);
        }
        waiting.is_empty()
    })
    .await
}

/// Reads until the RUN_STARTED of `run_id`.
async fn read_until_started(
    stream: &mut Streaming<pb::WatchEventsResponse>,
    run_id: &str,
) -> Vec<pb::RunEvent> {
    read_until(stream, |event| {
        event.run_id == run_id && event.r#type() == pb::RunEventType::RunStarted
    })
    .await
}

/// The events of one run have sequences 1..=n, in order, and RUN_FINISHED
/// is the last and only terminal run event.
fn assert_whole_run(events: &[pb::RunEvent]) {
    let sequences: Vec<u64> = events.iter().map(|event| event.sequence).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(sequences, expected, "sequences with a gap or a repeat");
    assert_eq!(
        events.first().map(pb::RunEvent::r#type),
        Some(pb::RunEventType::RunStarted)
    );
    let finished: Vec<&pb::RunEvent> = events
        .iter()
        .filter(|event| event.r#type() == pb::RunEventType::RunFinished)
        .collect();
    assert_eq!(finished.len(), 1);
    assert_eq!(
        events.last().map(pb::RunEvent::r#type),
        Some(pb::RunEventType::RunFinished)
    );
}

fn assert_cursors_increase(events: &[pb::RunEvent]) {
    assert!(
        events
            .windows(2)
            .all(|pair| pair[0].cursor < pair[1].cursor),
        "cursors not strictly increasing: {:?}",
        events.iter().map(|event| event.cursor).collect::<Vec<_>>()
    );
}

/// Registers workflow `name` with independent tasks `task_ids`, and
/// `dependant` depending on all of them when given.
async fn register_fan_in(
    server: &TestServer,
    name: &str,
    task_ids: &[&str],
    dependant: Option<&str>,
) {
    let mut tasks: Vec<serde_json::Value> = task_ids.iter().map(|id| json!({"id": id})).collect();
    if let Some(dependant) = dependant {
        tasks.push(json!({"id": dependant, "dependencies": task_ids}));
    }
    server
        .register(NS, json!({"name": name, "tasks": tasks}))
        .await;
}

/// Handler names for the tasks of a workflow.
fn handlers(workflow: &str, task_ids: &[&str]) -> Vec<String> {
    task_ids
        .iter()
        .map(|id| format!("{workflow}.{id}"))
        .collect()
}

/// An executor that completes every task at once, except `gated_task`,
/// which reports on `started` and then waits until `gate` turns true.
struct GatedExecutor {
    _executor: TestExecutor,
    gate: watch::Sender<bool>,
    started: mpsc::UnboundedReceiver<String>,
}

impl GatedExecutor {
    async fn connect(
        server: &TestServer,
        handler_names: &[String],
        gated_task: &str,
    ) -> GatedExecutor {
        let (gate, gate_receiver) = watch::channel(false);
        let (started_sender, started) = mpsc::unbounded_channel();
        let gated_task = gated_task.to_owned();
        let refs: Vec<&str> = handler_names.iter().map(String::as_str).collect();
        let executor = TestExecutor::connect(
            server.channel().await,
            NS,
            &refs,
            64,
            handler(move |assigned| {
                let mut gate = gate_receiver.clone();
                let started = started_sender.clone();
                let gated = assigned.task_id == gated_task;
                async move {
                    if gated {
                        let _ = started.send(assigned.run_id.clone());
                        let _ = gate.wait_for(|open| *open).await;
                    }
                    Outcome::set(json!({ assigned.task_id: true }))
                }
            }),
        )
        .await;
        GatedExecutor {
            _executor: executor,
            gate,
            started,
        }
    }

    /// Waits until the gated task of some run is running; returns the run.
    async fn gated_task_started(&mut self) -> String {
        tokio::time::timeout(LIMIT, self.started.recv())
            .await
            .expect("the gated task started")
            .expect("executor alive")
    }

    fn open_gate(&self) {
        let _ = self.gate.send(true);
    }
}

/// Registers `diamond`: a -> (b, c) -> d, and connects an executor that
/// holds task b until its gate opens.
async fn diamond_with_gate(server: &TestServer) -> GatedExecutor {
    server
        .register(
            NS,
            json!({"name": "diamond", "tasks": [
                {"id": "a"},
                {"id": "b", "dependencies": ["a"]},
                {"id": "c", "dependencies": ["a"]},
                {"id": "d", "dependencies": ["b", "c"]}
            ]}),
        )
        .await;
    GatedExecutor::connect(server, &handlers("diamond", &["a", "b", "c", "d"]), "b").await
}

#[tokio::test]
async fn watch_run_started_mid_run_sees_every_event_once_in_order_and_ends_at_run_finished() {
    let server = TestServer::start().await;
    let mut executor = diamond_with_gate(&server).await;
    let run_id = server.start_run(NS, "diamond", json!({})).await;
    assert_eq!(executor.gated_task_started().await, run_id);

    // The run is halfway: a succeeded, b runs. History comes from the
    // database, the rest live once the gate opens.
    let mut stream = watch_run(&server, &run_id, 0).await;
    executor.open_gate();
    let live = read_to_end(&mut stream).await;

    assert_whole_run(&live);
    // RUN_STARTED, 4 events per task (ready, assigned, started, succeeded),
    // RUN_FINISHED.
    assert_eq!(live.len(), 1 + 4 * 4 + 1);
    assert_cursors_increase(&live);
    let finished = live.last().expect("events");
    assert_eq!(finished.run_status(), pb::RunStatus::Succeeded);
    for task in ["a", "b", "c", "d"] {
        let succeeded = live
            .iter()
            .filter(|event| {
                event.task_id == task && event.r#type() == pb::RunEventType::TaskSucceeded
            })
            .count();
        assert_eq!(succeeded, 1, "task {task}");
    }
    let run = server.get_run(NS, &run_id).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);

    // A watch of the finished run replays the same events, then ends.
    let replayed = read_to_end(&mut watch_run(&server, &run_id, 0).await).await;
    assert_eq!(keys(&replayed), keys(&live));
    assert_eq!(replayed, live, "every field survives the database");
}

#[tokio::test]
async fn watch_run_after_a_sequence_yields_exactly_the_later_events() {
    let server = TestServer::start().await;
    let mut executor = diamond_with_gate(&server).await;
    let run_id = server.start_run(NS, "diamond", json!({})).await;
    executor.gated_task_started().await;
    // Started while the run is live, skipping the first three events.
    let mut live_from_3 = watch_run(&server, &run_id, 3).await;
    executor.open_gate();
    let live_tail = read_to_end(&mut live_from_3).await;

    let all = read_to_end(&mut watch_run(&server, &run_id, 0).await).await;
    assert_whole_run(&all);
    assert_eq!(keys(&live_tail), keys(&all[3..]));

    let n = all.len() as u64;
    for after in [1, 5, n - 1, n, n + 10] {
        let tail = read_to_end(&mut watch_run(&server, &run_id, after).await).await;
        let skip = usize::try_from(after.min(n)).expect("small");
        assert_eq!(keys(&tail), keys(&all[skip..]), "after {after}");
    }
}

#[tokio::test]
async fn watch_run_of_an_unknown_run_or_of_another_namespace_is_not_found() {
    let server = TestServer::start().await;
    register_fan_in(&server, "solo", &["a"], None).await;
    let run_id = server.start_run(NS, "solo", json!({})).await;
    let mut other_namespace = server.run_client("elsewhere").await;
    for (client, id) in [
        (&mut server.run_client(NS).await, "no-such-run".to_owned()),
        (&mut other_namespace, run_id),
    ] {
        let status = client
            .watch_run(pb::WatchRunRequest {
                run_id: id.clone(),
                after_sequence: 0,
            })
            .await
            .expect_err("not found");
        assert_eq!(status.code(), tonic::Code::NotFound, "{id}");
        assert!(status.message().contains(&id), "{}", status.message());
    }
    let status = server
        .run_client(NS)
        .await
        .watch_run(pb::WatchRunRequest::default())
        .await
        .expect_err("no run id");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn watch_events_rejects_bad_filters_with_a_reason() {
    let server = TestServer::start().await;
    let mut client = server.run_client(NS).await;
    let cases = [
        (
            pb::WatchEventsRequest {
                types: vec![pb::RunEventType::Unspecified as i32],
                ..pb::WatchEventsRequest::default()
            },
            tonic::Code::InvalidArgument,
            "UNSPECIFIED",
        ),
        (
            pb::WatchEventsRequest {
                types: vec![99],
                ..pb::WatchEventsRequest::default()
            },
            tonic::Code::InvalidArgument,
            "99",
        ),
        (
            pb::WatchEventsRequest {
                workflow_names: vec!["etl".into(), String::new()],
                ..pb::WatchEventsRequest::default()
            },
            tonic::Code::InvalidArgument,
            "workflow_names[1]",
        ),
        (
            pb::WatchEventsRequest {
                run_ids: (0..101).map(|n| format!("run-{n}")).collect(),
                ..pb::WatchEventsRequest::default()
            },
            tonic::Code::ResourceExhausted,
            "run_ids has 101 values, over the limit of 100 by 1",
        ),
    ];
    for (request, code, message) in cases {
        let status = client.watch_events(request).await.expect_err("refused");
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(status.message().contains(message), "{}", status.message());
    }
}

#[tokio::test]
async fn watch_events_resumes_from_a_cursor_without_gap_or_duplicate_also_after_a_restart() {
    let server = TestServer::start().await;
    let tasks = ["x", "y", "z"];
    register_fan_in(&server, "fan", &tasks, Some("join")).await;
    let executor = instant_executor(&server, &handlers("fan", &["x", "y", "z", "join"]), 8).await;
    let first = server.start_run(NS, "fan", json!({})).await;
    let second = server.start_run(NS, "fan", json!({})).await;
    let mut stream = watch_events(&server, after_cursor(0)).await;
    let all = read_until_finished(&mut stream, &[&first, &second]).await;
    drop(stream);
    assert_cursors_increase(&all);
    for run_id in [&first, &second] {
        let of_run: Vec<pb::RunEvent> = all
            .iter()
            .filter(|e| &e.run_id == run_id)
            .cloned()
            .collect();
        assert_whole_run(&of_run);
    }

    // Resume on the same server from the fifth event.
    let mut resumed = watch_events(&server, after_cursor(all[4].cursor)).await;
    let rest = read_until_finished(&mut resumed, &[&first, &second]).await;
    assert_eq!(keys(&rest), keys(&all[5..]));
    drop(resumed);

    // Resume on a new server over the same database from a later event. A
    // run started there is the barrier: its RUN_STARTED must come right
    // after the old events, with a cursor past all of them.
    drop(executor);
    let database = server.stop().await;
    let server = TestServer::start_on(database, |_| {}).await;
    let resume_at = all.len() / 2;
    let mut after_restart = watch_events(&server, after_cursor(all[resume_at].cursor)).await;
    let executor = instant_executor(&server, &handlers("fan", &["x", "y", "z", "join"]), 8).await;
    let third = server.start_run(NS, "fan", json!({})).await;
    let mut replayed = read_until_started(&mut after_restart, &third).await;
    let barrier = replayed.pop().expect("the new run's first event");
    assert_eq!(keys(&replayed), keys(&all[resume_at + 1..]));
    assert!(barrier.cursor > all.last().expect("events").cursor);
    // The new run's events follow live, once each, in order.
    let mut live = vec![barrier];
    live.extend(read_until_finished(&mut after_restart, &[&third]).await);
    let of_third: Vec<pb::RunEvent> = live.iter().filter(|e| e.run_id == third).cloned().collect();
    assert_eq!(of_third.len(), live.len(), "only the new run is live");
    assert_whole_run(&of_third);
    assert_cursors_increase(&live);
    drop(executor);
}

#[tokio::test]
async fn watch_events_filters_by_workflow_run_and_type_in_replay_and_live() {
    let server = TestServer::start().await;
    register_fan_in(&server, "alpha", &["a1", "a2"], None).await;
    let mut executor = diamond_with_gate(&server).await;
    let _alpha_executor = instant_executor(&server, &["alpha.a1", "alpha.a2"], 8).await;
    let by_workflow = pb::WatchEventsRequest {
        workflow_names: vec!["alpha".into()],
        ..pb::WatchEventsRequest::default()
    };
    let by_type = pb::WatchEventsRequest {
        types: vec![
            pb::RunEventType::RunStarted as i32,
            pb::RunEventType::TaskSucceeded as i32,
        ],
        ..pb::WatchEventsRequest::default()
    };
    // Opened before anything runs, so these follow the runs mostly live.
    let mut live_by_workflow = watch_events(&server, by_workflow.clone()).await;
    let mut live_by_type = watch_events(&server, by_type.clone()).await;

    let alpha_1 = server.start_run(NS, "alpha", json!({})).await;
    let diamond = server.start_run(NS, "diamond", json!({})).await;
    executor.gated_task_started().await;
    // Opened while the diamond is halfway: history, then live events.
    let by_run = pb::WatchEventsRequest {
        run_ids: vec![alpha_1.clone(), diamond.clone()],
        ..pb::WatchEventsRequest::default()
    };
    let mut live_by_run = watch_events(&server, by_run.clone()).await;
    let alpha_2 = server.start_run(NS, "alpha", json!({})).await;
    executor.open_gate();

    let finished = [alpha_1.as_str(), diamond.as_str(), alpha_2.as_str()];
    let all =
        read_until_finished(&mut watch_events(&server, after_cursor(0)).await, &finished).await;
    let expected = |keep: &dyn Fn(&pb::RunEvent) -> bool| -> Vec<Key> {
        all.iter().filter(|event| keep(event)).map(key).collect()
    };
    let of_alpha = expected(&|event| event.workflow_name == "alpha");
    let of_runs = expected(&|event| event.run_id == alpha_1 || event.run_id == diamond);
    let of_types = expected(&|event| {
        matches!(
            event.r#type(),
            pb::RunEventType::RunStarted | pb::RunEventType::TaskSucceeded
        )
    });
    assert_eq!(of_types.len(), 3 + 2 + 4 + 2);

    // Both runs of the run filter have finished, so nothing after their
    // RUN_FINISHED can match: reading up to both is reading everything.
    let mut replay_by_run = watch_events(&server, by_run).await;
    for (source, stream) in [("live", &mut live_by_run), ("replay", &mut replay_by_run)] {
        let seen = read_until_finished(stream, &[&alpha_1, &diamond]).await;
        assert_eq!(keys(&seen), of_runs, "{source}, by run");
    }

    // For the other filters, a run started now is the barrier: its
    // RUN_STARTED matches both and must come right after the old events.
    let barrier = server.start_run(NS, "alpha", json!({})).await;
    let mut replay_by_workflow = watch_events(&server, by_workflow).await;
    let mut replay_by_type = watch_events(&server, by_type).await;
    for (filter, stream, expected) in [
        ("live, by workflow", &mut live_by_workflow, &of_alpha),
        ("replay, by workflow", &mut replay_by_workflow, &of_alpha),
        ("live, by type", &mut live_by_type, &of_types),
        ("replay, by type", &mut replay_by_type, &of_types),
    ] {
        let mut seen = read_until_started(stream, &barrier).await;
        seen.pop();
        assert_eq!(&keys(&seen), expected, "{filter}");
    }
}

/// A workflow of `width` independent tasks: 4 events each, plus the run's 2.
async fn register_wide(server: &TestServer, width: usize) -> Vec<String> {
    let task_ids: Vec<String> = (0..width).map(|n| format!("t{n:04}")).collect();
    let refs: Vec<&str> = task_ids.iter().map(String::as_str).collect();
    register_fan_in(server, "wide", &refs, None).await;
    handlers("wide", &refs)
}

#[tokio::test]
async fn a_paused_watcher_gets_over_a_thousand_events_once_each_in_order_when_it_resumes() {
    // A live buffer of 16 events: the paused watchers fall far behind it,
    // so everything they deliver past that comes from the database.
    let server = TestServer::start_with(|config| config.event_buffer = 16).await;
    let handler_names = register_wide(&server, 300).await;
    let _executor = instant_executor(&server, &handler_names, 32).await;

    // Opened before the run and not read until it has finished.
    let mut paused_events = stalled_watch_events(&server).await;
    let run_id = server.start_run(NS, "wide", json!({})).await;
    let mut paused_run = stalled_watch_run(&server, &run_id).await;
    let run = server.wait_for_run(NS, &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);

    let expected = 1 + 4 * 300 + 1;
    let of_run = read_to_end(&mut paused_run).await;
    assert_eq!(of_run.len(), expected);
    assert_whole_run(&of_run);
    let of_namespace = read_until_finished(&mut paused_events, &[&run_id]).await;
    assert_eq!(keys(&of_namespace), keys(&of_run));
    assert_cursors_increase(&of_namespace);
}

#[tokio::test]
async fn watchers_that_never_read_do_not_stop_runs_from_completing() {
    let server = TestServer::start_with(|config| config.event_buffer = 16).await;
    let handler_names = register_wide(&server, 100).await;
    let _executor = instant_executor(&server, &handler_names, 16).await;
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(stalled_watch_events(&server).await);
    }
    let first = server.start_run(NS, "wide", json!({})).await;
    let stalled_run = stalled_watch_run(&server, &first).await;
    let mut runs = vec![first];
    for _ in 0..4 {
        runs.push(server.start_run(NS, "wide", json!({})).await);
    }
    for run_id in &runs {
        let run = server.wait_for_run(NS, run_id, LIMIT).await;
        assert_eq!(run.status(), pb::RunStatus::Succeeded, "{run_id}");
    }
    // A new watcher is served as usual while the others still stall.
    let refs: Vec<&str> = runs.iter().map(String::as_str).collect();
    let all = read_until_finished(&mut watch_events(&server, after_cursor(0)).await, &refs).await;
    assert_eq!(all.len(), runs.len() * (1 + 4 * 100 + 1));
    drop((stalled, stalled_run));
}

#[tokio::test]
async fn a_watcher_that_never_reads_does_not_keep_the_server_from_stopping() {
    let server = TestServer::start_with(|config| config.shutdown_grace_ms = 100).await;
    let handler_names = register_wide(&server, 100).await;
    let _executor = instant_executor(&server, &handler_names, 16).await;
    let _stalled = stalled_watch_events(&server).await;
    let run_id = server.start_run(NS, "wide", json!({})).await;
    server.wait_for_run(NS, &run_id, LIMIT).await;
    // The stalled stream has more events queued than its window lets
    // through; the shutdown gives up on it after the grace period.
    tokio::time::timeout(LIMIT, server.stop())
        .await
        .expect("the server stopped");
}

#[tokio::test]
async fn the_retention_job_deletes_finished_runs_and_leaves_running_ones_whole() {
    let server = TestServer::start_with(|config| {
        config.retention_ms = Some(1);
        config.retention_interval_ms = 20;
        config.retention_batch_runs = 2;
    })
    .await;
    let mut executor = diamond_with_gate(&server).await;
    register_fan_in(&server, "solo", &["a"], None).await;
    let _solo_executor = instant_executor(&server, &["solo.a"], 4).await;
    let running = server.start_run(NS, "diamond", json!({})).await;
    executor.gated_task_started().await;
    // Settled until the gate opens: a and c done, b running, d waiting.
    let running_before = server
        .wait_until(NS, &running, LIMIT, |run| {
            task(run, "b").state() == pb::TaskState::Running
                && task(run, "c").state() == pb::TaskState::Succeeded
        })
        .await;
    let finished: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(server.start_run(NS, "solo", json!({})).await);
        }
        ids
    };
    let mut client = server.run_client(NS).await;
    for run_id in &finished {
        wait_until_deleted(&mut client, run_id).await;
    }
    // The running run kept every row: the same tasks and attempts.
    let running_after = server.get_run(NS, &running).await;
    assert_eq!(running_after.status(), pb::RunStatus::Running);
    assert_eq!(running_after.tasks, running_before.tasks);
    let history = read_until(&mut watch_events(&server, after_cursor(0)).await, |event| {
        event.run_id == running
            && event.task_id == "b"
            && event.r#type() == pb::RunEventType::TaskStarted
    })
    .await;
    assert!(
        history.iter().all(|event| event.run_id == running),
        "only the running run's events are left"
    );
    let sequences: Vec<u64> = history.iter().map(|event| event.sequence).collect();
    assert_eq!(sequences, (1..=history.len() as u64).collect::<Vec<_>>());

    // Once it finishes, it expires too.
    executor.open_gate();
    wait_until_deleted(&mut client, &running).await;
}

/// Polls GetRun until the run is NOT_FOUND (see `LIMIT`).
async fn wait_until_deleted(client: &mut Client, run_id: &str) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let result = client
            .get_run(pb::GetRunRequest {
                run_id: run_id.to_owned(),
                omit_contexts: false,
                ..Default::default()
            })
            .await;
        match result {
            Err(status) if status.code() == tonic::Code::NotFound => return,
            Err(status) => panic!("GetRun failed: {status}"),
            Ok(_) => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run {run_id} was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
