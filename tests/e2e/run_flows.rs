//! Runs executing on real executors over gRPC: DAG shapes, the context
//! rule, parallelism, failures, trigger rules, retries, timeouts and
//! cancellation.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Barrier;
use tributary_e2e::executor::{Outcome, TestExecutor, handler};
use tributary_e2e::{TestServer, context, task};
use tributary_proto::v1 as pb;

const LIMIT: Duration = Duration::from_secs(60);

/// An executor for workflow `wf` whose every task records
/// `{"<task>": [keys of its input]}` and succeeds.
async fn recording_executor(
    server: &TestServer,
    workflow: &str,
    tasks: &[&str],
    capacity: u32,
) -> TestExecutor {
    let handlers: Vec<String> = tasks.iter().map(|t| format!("{workflow}.{t}")).collect();
    let handler_refs: Vec<&str> = handlers.iter().map(String::as_str).collect();
    TestExecutor::connect(
        server.channel().await,
        "default",
        &handler_refs,
        capacity,
        handler(|assigned| async move {
            let keys: Vec<String> = assigned
                .input
                .as_object()
                .map(|object| object.keys().cloned().collect())
                .unwrap_or_default();
            Outcome::set(json!({ assigned.task_id: keys }))
        }),
    )
    .await
}

#[tokio::test]
async fn a_diamond_runs_and_its_fan_in_sees_both_branches() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "diamond", "tasks": [
                {"id": "a"},
                {"id": "b", "dependencies": ["a"]},
                {"id": "c", "dependencies": ["a"]},
                {"id": "d", "dependencies": ["b", "c"]}
            ]}),
        )
        .await;
    let executor = recording_executor(&server, "diamond", &["a", "b", "c", "d"], 4).await;
    let run_id = server
        .start_run("default", "diamond", json!({"seed": 1}))
        .await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    assert_eq!(
        context(&run),
        json!({"seed": 1, "a": ["seed"], "b": ["a", "seed"], "c": ["a", "seed"], "d": ["a", "b", "c", "seed"]})
    );
    let ids: Vec<&str> = run.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"], "canonical order");
    for task_run in &run.tasks {
        assert_eq!(task_run.state(), pb::TaskState::Succeeded);
        assert_eq!(task_run.attempts.len(), 1);
        let attempt = &task_run.attempts[0];
        assert_eq!(attempt.executor_id, executor.executor_id());
        assert_eq!(attempt.state(), pb::AttemptState::Succeeded);
        assert!(attempt.started_at.is_some() && attempt.finished_at.is_some());
    }
    assert!(run.finished_at.is_some());
    server.stop().await;
}

#[tokio::test]
async fn a_fan_out_of_100_and_a_chain_of_100_complete() {
    let server = TestServer::start().await;
    let mut fan = vec![json!({"id": "root"})];
    let mut leaves = Vec::new();
    for index in 0..100 {
        fan.push(
            json!({"id": format!("leaf{index}"), "dependencies": ["root"], "handler": "noop"}),
        );
        leaves.push(format!("leaf{index}"));
    }
    fan[0]["handler"] = json!("noop");
    fan.push(json!({"id": "sink", "dependencies": leaves, "handler": "noop"}));
    server
        .register("default", json!({"name": "fan", "tasks": fan}))
        .await;
    let chain: Vec<serde_json::Value> = (0..100)
        .map(|index| {
            if index == 0 {
                json!({"id": "t0", "handler": "noop"})
            } else {
                json!({"id": format!("t{index}"), "dependencies": [format!("t{}", index - 1)], "handler": "noop"})
            }
        })
        .collect();
    server
        .register("default", json!({"name": "chain", "tasks": chain}))
        .await;
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["noop"],
        16,
        handler(|assigned| async move {
            let seen = assigned.input.as_object().map(|o| o.len()).unwrap_or(0);
            Outcome::set(json!({ assigned.task_id: seen }))
        }),
    )
    .await;
    let fan_run = server.start_run("default", "fan", json!({})).await;
    let chain_run = server.start_run("default", "chain", json!({})).await;
    let fan_run = server.wait_for_run("default", &fan_run, LIMIT).await;
    let chain_run = server.wait_for_run("default", &chain_run, LIMIT).await;
    assert_eq!(fan_run.status(), pb::RunStatus::Succeeded);
    assert_eq!(chain_run.status(), pb::RunStatus::Succeeded);
    // The sink saw the root's key and all 100 leaves' keys.
    assert_eq!(context(&fan_run)["sink"], json!(101));
    // Each link of the chain saw every earlier link.
    assert_eq!(context(&chain_run)["t99"], json!(99));
    server.stop().await;
}

fn seed_definition() -> serde_json::Value {
    json!({"name": "seed", "tasks": [
        {"id": "generate_data", "retry_attempts": 2},
        {"id": "partition_data", "dependencies": ["generate_data"], "retry_attempts": 2},
        {"id": "process_partition_1", "dependencies": ["partition_data"], "retry_attempts": 3, "retry_delay_ms": 1000},
        {"id": "process_partition_2", "dependencies": ["partition_data"], "retry_attempts": 3, "retry_delay_ms": 1000},
        {"id": "process_partition_3", "dependencies": ["partition_data"], "retry_attempts": 3, "retry_delay_ms": 1000},
        {"id": "combine_results", "dependencies": ["process_partition_1", "process_partition_2", "process_partition_3"], "retry_attempts": 2},
        {"id": "generate_report", "dependencies": ["combine_results"]},
        {"id": "send_notifications", "dependencies": ["combine_results"]},
        {"id": "cleanup", "dependencies": ["generate_report", "send_notifications"], "trigger_rule": "all_done"}
    ]})
}

fn seed_handlers() -> Vec<String> {
    seed_definition()["tasks"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .filter_map(|task| task["id"].as_str())
                .map(|id| format!("seed.{id}"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_seed_shape_runs_its_partitions_at_once_and_combines_their_stats() {
    let server = TestServer::start().await;
    server.register("default", seed_definition()).await;
    // Each partition waits until all three have started: the run can only
    // finish if the server runs them at the same time.
    let rendezvous = Arc::new(Barrier::new(3));
    let handlers = seed_handlers();
    let handler_refs: Vec<&str> = handlers.iter().map(String::as_str).collect();
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &handler_refs,
        8,
        handler(move |assigned| {
            let rendezvous = rendezvous.clone();
            async move {
                let input = &assigned.input;
                match assigned.task_id.as_str() {
                    "generate_data" => {
                        Outcome::set(json!({"products": [1, 2, 3, 4, 5, 6], "total_products": 6}))
                    }
                    "partition_data" => Outcome::set(json!({
                        "partition_1": [1, 2], "partition_2": [3, 4], "partition_3": [5, 6]
                    })),
                    "process_partition_1" | "process_partition_2" | "process_partition_3" => {
                        rendezvous.wait().await;
                        let n = assigned.task_id.trim_start_matches("process_partition_");
                        let sum: i64 = input[format!("partition_{n}")]
                            .as_array()
                            .map(|items| items.iter().filter_map(|v| v.as_i64()).sum())
                            .unwrap_or(-1);
                        Outcome::set(json!({ format!("stats_{n}"): sum }))
                    }
                    "combine_results" => {
                        let total: i64 = (1..=3)
                            .map(|n| input[format!("stats_{n}")].as_i64().unwrap_or(-1000))
                            .sum();
                        Outcome::set(json!({"final_stats": total}))
                    }
                    other => Outcome::set(json!({ other: true })),
                }
            }
        }),
    )
    .await;
    let run_id = server.start_run("default", "seed", json!({})).await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    let final_context = context(&run);
    assert_eq!(final_context["stats_1"], json!(3));
    assert_eq!(final_context["stats_2"], json!(7));
    assert_eq!(final_context["stats_3"], json!(11));
    assert_eq!(final_context["final_stats"], json!(21));
    assert_eq!(final_context["cleanup"], json!(true));
    server.stop().await;
}

#[tokio::test]
async fn a_failed_branch_skips_its_dependants_while_others_finish_and_cleanup_runs() {
    let server = TestServer::start().await;
    let mut definition = seed_definition();
    definition["tasks"][3]["retry_attempts"] = json!(0);
    server.register("default", definition).await;
    let handlers = seed_handlers();
    let handler_refs: Vec<&str> = handlers.iter().map(String::as_str).collect();
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &handler_refs,
        8,
        handler(|assigned| async move {
            if assigned.task_id == "process_partition_2" {
                Outcome::fail("partition 2 is corrupt")
            } else {
                Outcome::set(json!({ assigned.task_id: true }))
            }
        }),
    )
    .await;
    let run_id = server.start_run("default", "seed", json!({})).await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Failed);
    let failed = task(&run, "process_partition_2");
    assert_eq!(failed.state(), pb::TaskState::Failed);
    assert_eq!(failed.error, "partition 2 is corrupt");
    for succeeded in ["process_partition_1", "process_partition_3", "cleanup"] {
        assert_eq!(
            task(&run, succeeded).state(),
            pb::TaskState::Succeeded,
            "{succeeded}"
        );
    }
    for skipped in ["combine_results", "generate_report", "send_notifications"] {
        let skipped_task = task(&run, skipped);
        assert_eq!(skipped_task.state(), pb::TaskState::Skipped, "{skipped}");
        assert_eq!(
            skipped_task.skip_reason(),
            pb::SkipReason::UpstreamFailed,
            "{skipped}"
        );
    }
    assert_eq!(context(&run)["process_partition_3"], json!(true));
    server.stop().await;
}

/// Runs `upstream_ok -> target` and `upstream_bad -> target` style graphs
/// for one trigger rule and returns the target's final state.
async fn target_state(
    server: &TestServer,
    rule: &str,
    outcomes: &[&str],
) -> (pb::TaskState, pb::SkipReason) {
    let name = format!("rule-{}-{}", rule.replace('_', "-"), outcomes.join("-"));
    let mut tasks: Vec<serde_json::Value> = outcomes
        .iter()
        .enumerate()
        .map(|(index, outcome)| json!({"id": format!("up{index}"), "handler": format!("outcome.{outcome}")}))
        .collect();
    let dependencies: Vec<String> = (0..outcomes.len())
        .map(|index| format!("up{index}"))
        .collect();
    tasks.push(json!({"id": "target", "dependencies": dependencies, "trigger_rule": rule, "handler": "outcome.succeed"}));
    server
        .register("default", json!({"name": name, "tasks": tasks}))
        .await;
    let run_id = server.start_run("default", &name, json!({})).await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    let target = task(&run, "target");
    (target.state(), target.skip_reason())
}

#[tokio::test]
async fn each_trigger_rule_decides_from_terminal_dependencies() {
    use pb::SkipReason::{RuleNotMet, Unspecified, UpstreamFailed};
    use pb::TaskState::{Skipped, Succeeded};
    let server = TestServer::start().await;
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["outcome.succeed", "outcome.fail"],
        8,
        handler(|assigned| async move {
            if assigned.handler == "outcome.fail" {
                Outcome::fail_for_good("planned failure")
            } else {
                Outcome::set(json!({}))
            }
        }),
    )
    .await;
    let cases: [(&str, &[&str], (pb::TaskState, pb::SkipReason)); 10] = [
        (
            "all_success",
            &["succeed", "succeed"],
            (Succeeded, Unspecified),
        ),
        (
            "all_success",
            &["succeed", "fail"],
            (Skipped, UpstreamFailed),
        ),
        ("all_done", &["fail", "fail"], (Succeeded, Unspecified)),
        (
            "one_success",
            &["fail", "succeed"],
            (Succeeded, Unspecified),
        ),
        ("one_success", &["fail", "fail"], (Skipped, UpstreamFailed)),
        ("one_failed", &["succeed", "fail"], (Succeeded, Unspecified)),
        ("one_failed", &["succeed", "succeed"], (Skipped, RuleNotMet)),
        (
            "none_failed",
            &["succeed", "succeed"],
            (Succeeded, Unspecified),
        ),
        (
            "none_failed",
            &["succeed", "fail"],
            (Skipped, UpstreamFailed),
        ),
        ("all_success", &["succeed"], (Succeeded, Unspecified)),
    ];
    for (rule, outcomes, expected) in cases {
        assert_eq!(
            target_state(&server, rule, outcomes).await,
            expected,
            "{rule} over {outcomes:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_retry_waits_at_least_its_delay_and_then_succeeds() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "flaky", "tasks": [{"id": "call", "retry_attempts": 2, "retry_delay_ms": 300, "retry_jitter": false}]}),
        )
        .await;
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["flaky.call"],
        1,
        handler(|assigned| async move {
            if assigned.attempt_number == 1 {
                Outcome::fail("connection reset")
            } else {
                Outcome::set(json!({"attempt": assigned.attempt_number}))
            }
        }),
    )
    .await;
    let run_id = server.start_run("default", "flaky", json!({})).await;
    // While waiting, the task is visibly scheduled for a retry.
    let scheduled = server
        .wait_until("default", &run_id, LIMIT, |run| {
            task(run, "call").state() == pb::TaskState::RetryScheduled
                || run.status() == pb::RunStatus::Succeeded
        })
        .await;
    if scheduled.status() != pb::RunStatus::Succeeded {
        assert!(task(&scheduled, "call").next_attempt_at.is_some());
    }
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    let attempts = &task(&run, "call").attempts;
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].state(), pb::AttemptState::Failed);
    assert_eq!(attempts[0].error, "connection reset");
    let failed_at = tributary_proto::unix_ms_from_timestamp(
        attempts[0].finished_at.as_ref().expect("finished"),
    );
    let retried_at = tributary_proto::unix_ms_from_timestamp(
        attempts[1].assigned_at.as_ref().expect("assigned"),
    );
    assert!(
        retried_at - failed_at >= 300,
        "retried after {} ms",
        retried_at - failed_at
    );
    assert_eq!(context(&run)["attempt"], json!(2));
    server.stop().await;
}

#[tokio::test]
async fn a_timed_out_attempt_is_cancelled_and_the_retry_succeeds() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "slow", "tasks": [{"id": "work", "timeout_ms": 200, "retry_attempts": 1, "retry_delay_ms": 0}]}),
        )
        .await;
    let executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["slow.work"],
        2,
        handler(|assigned| async move {
            if assigned.attempt_number == 1 {
                Outcome::HangUntilCancelled
            } else {
                Outcome::set(json!({"done": true}))
            }
        }),
    )
    .await;
    let run_id = server.start_run("default", "slow", json!({})).await;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    let attempts = &task(&run, "work").attempts;
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].state(), pb::AttemptState::TimedOut);
    assert_eq!(attempts[0].error, "attempt timed out after 200 ms");
    assert_eq!(executor.cancels(), [attempts[0].id.clone()]);
    server.stop().await;
}

#[tokio::test]
async fn cancelling_a_run_cancels_waiting_tasks_and_running_attempts() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "long", "tasks": [{"id": "first"}, {"id": "second", "dependencies": ["first"]}]}),
        )
        .await;
    let executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["long.first", "long.second"],
        1,
        handler(|_| async move { Outcome::HangUntilCancelled }),
    )
    .await;
    let run_id = server.start_run("default", "long", json!({})).await;
    server
        .wait_until("default", &run_id, LIMIT, |run| {
            task(run, "first").state() == pb::TaskState::Running
        })
        .await;
    let mut client = server.run_client("default").await;
    let response = client
        .cancel_run(pb::CancelRunRequest {
            run_id: run_id.clone(),
        })
        .await
        .expect("cancels")
        .into_inner();
    assert_eq!(response.status(), pb::RunStatus::Cancelled);
    let run = server.get_run("default", &run_id).await;
    assert_eq!(run.status(), pb::RunStatus::Cancelled);
    assert_eq!(task(&run, "first").state(), pb::TaskState::Cancelled);
    assert_eq!(task(&run, "second").state(), pb::TaskState::Cancelled);
    assert_eq!(
        task(&run, "first").attempts[0].state(),
        pb::AttemptState::Cancelled
    );
    // The cancellation reached the executor holding the attempt.
    let attempt_id = task(&run, "first").attempts[0].id.clone();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !executor.cancels().contains(&attempt_id) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cancel never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let again = client
        .cancel_run(pb::CancelRunRequest {
            run_id: run_id.clone(),
        })
        .await
        .expect_err("already cancelled");
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        again.message(),
        format!("run {run_id} is already cancelled")
    );
    server.stop().await;
}

#[tokio::test]
async fn conflicting_parallel_writes_give_the_same_final_context_every_time() {
    let server = TestServer::start().await;
    server
        .register(
            "default",
            json!({"name": "race", "tasks": [
                {"id": "left", "handler": "race.write"},
                {"id": "right", "handler": "race.write"},
                {"id": "middle", "handler": "race.write"},
                {"id": "join", "dependencies": ["left", "middle", "right"], "handler": "race.join"}
            ]}),
        )
        .await;
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["race.write", "race.join"],
        8,
        handler(|assigned| async move {
            if assigned.handler == "race.join" {
                return Outcome::set(json!({"join_saw": assigned.input["winner"].clone()}));
            }
            // Finish in a different order on each run.
            let delay =
                (assigned.run_id.len() + assigned.task_id.len() * 7 + fastish_random()) % 40;
            tokio::time::sleep(Duration::from_millis(delay as u64)).await;
            Outcome::set(json!({"winner": assigned.task_id}))
        }),
    )
    .await;
    for _ in 0..5 {
        let run_id = server.start_run("default", "race", json!({})).await;
        let run = server.wait_for_run("default", &run_id, LIMIT).await;
        assert_eq!(run.status(), pb::RunStatus::Succeeded);
        assert_eq!(
            context(&run)["winner"],
            json!("right"),
            "latest in canonical order wins"
        );
        assert_eq!(context(&run)["join_saw"], json!("right"));
        let mut conflicts: Vec<(String, String, String)> = run
            .conflicts
            .iter()
            .map(|c| {
                (
                    c.key.clone(),
                    c.winning_task_id.clone(),
                    c.overridden_task_id.clone(),
                )
            })
            .collect();
        conflicts.sort();
        let mut expected = vec![
            ("winner".to_owned(), "middle".to_owned(), "left".to_owned()),
            ("winner".to_owned(), "right".to_owned(), "left".to_owned()),
            ("winner".to_owned(), "right".to_owned(), "middle".to_owned()),
        ];
        expected.sort();
        assert_eq!(conflicts, expected);
    }
    server.stop().await;
}

fn fastish_random() -> usize {
    uuid::Uuid::now_v7().as_bytes()[15] as usize
}

#[tokio::test]
async fn integers_beyond_two_to_the_53_survive_the_round_trip() {
    let server = TestServer::start().await;
    server
        .register("default", json!({"name": "big", "tasks": [{"id": "echo"}]}))
        .await;
    let _executor = TestExecutor::connect(
        server.channel().await,
        "default",
        &["big.echo"],
        1,
        handler(|assigned| async move {
            // Echo the raw text of the input value, untouched by any parser.
            let raw = assigned.input_json.clone();
            let start = raw.find("huge\":").map(|i| i + 6).unwrap_or(0);
            let end = raw[start..]
                .find([',', '}'])
                .map(|i| start + i)
                .unwrap_or(raw.len());
            Outcome::CompleteRaw(format!("{{\"echo\":{}}}", &raw[start..end]))
        }),
    )
    .await;
    let mut client = server.run_client("default").await;
    let run_id = client
        .start_run(pb::StartRunRequest {
            workflow_name: "big".into(),
            input_context_json: r#"{"huge": 123456789012345678901234567890}"#.into(),
            ..pb::StartRunRequest::default()
        })
        .await
        .expect("starts")
        .into_inner()
        .run_id;
    let run = server.wait_for_run("default", &run_id, LIMIT).await;
    assert_eq!(run.status(), pb::RunStatus::Succeeded);
    assert_eq!(
        run.context_json,
        r#"{"echo":123456789012345678901234567890,"huge":123456789012345678901234567890}"#
    );
    server.stop().await;
}
