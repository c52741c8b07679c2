//! The scenarios of `conformance/SPEC.md`, each run on a fresh server, and
//! the workflow-definition helpers they share.

mod failures;
mod liveness;
mod mapping;
mod outcomes;
mod references;
mod routing;

use serde_json::{Value, json};

use crate::harness::Harness;
use crate::process::ServerOptions;

/// Every scenario, in the order of the SPEC.
pub const SCENARIOS: &[&str] = &[
    "echo_lossless",
    "retry_then_succeed",
    "retry_exhausted_and_skip",
    "non_retryable",
    "throw_reported",
    "cancel_reaches_code",
    "timeout_cancels",
    "slow_heartbeats",
    "cpu_heartbeats",
    "capacity",
    "worker_killed",
    "worker_stopped_past_lease",
    "server_restart_reclaims",
    "graceful_drain",
    "big_context",
    "vectors",
    "references",
    "reference_fetch",
    "mixed_fleet",
    "label_routing",
    "map_instances",
];

/// The server settings of a scenario.
pub fn server_options(scenario: &str) -> ServerOptions {
    match scenario {
        // The worker must reconnect within one lease timeout of the server
        // accepting connections again; a longer lease leaves room for the
        // reconnection backoff of every SDK.
        "server_restart_reclaims" => ServerOptions {
            heartbeat_interval_ms: 500,
            lease_timeout_ms: 5000,
        },
        _ => ServerOptions::default(),
    }
}

/// Runs one scenario.
pub async fn run(scenario: &str, harness: &mut Harness) -> Result<(), String> {
    match scenario {
        "echo_lossless" => outcomes::echo_lossless(harness).await,
        "retry_then_succeed" => outcomes::retry_then_succeed(harness).await,
        "retry_exhausted_and_skip" => outcomes::retry_exhausted_and_skip(harness).await,
        "non_retryable" => outcomes::non_retryable(harness).await,
        "throw_reported" => outcomes::throw_reported(harness).await,
        "cancel_reaches_code" => liveness::cancel_reaches_code(harness).await,
        "timeout_cancels" => liveness::timeout_cancels(harness).await,
        "slow_heartbeats" => liveness::slow_heartbeats(harness).await,
        "cpu_heartbeats" => liveness::cpu_heartbeats(harness).await,
        "capacity" => liveness::capacity(harness).await,
        "worker_killed" => failures::worker_killed(harness).await,
        "worker_stopped_past_lease" => failures::worker_stopped_past_lease(harness).await,
        "server_restart_reclaims" => failures::server_restart_reclaims(harness).await,
        "graceful_drain" => liveness::graceful_drain(harness).await,
        "big_context" => outcomes::big_context(harness).await,
        "vectors" => outcomes::vectors(harness).await,
        "references" => references::references(harness).await,
        "reference_fetch" => references::reference_fetch(harness).await,
        "mixed_fleet" => references::mixed_fleet(harness).await,
        "label_routing" => routing::label_routing(harness).await,
        "map_instances" => mapping::map_instances(harness).await,
        other => Err(format!("no scenario {other:?}")),
    }
}

/// A workflow definition in the definition-file format.
fn workflow(name: &str, tasks: Vec<Value>) -> Value {
    json!({"name": name, "tasks": tasks})
}

/// A task routed to `conformance.<handler>`, with `settings` (retry,
/// timeout, ...) added; retries are immediate unless a scenario says
/// otherwise.
fn task(id: &str, handler: &str, dependencies: &[&str], settings: Value) -> Value {
    let mut task = json!({
        "id": id,
        "handler": format!("conformance.{handler}"),
        "dependencies": dependencies,
        "retry_attempts": 0,
        "retry_delay_ms": 0,
        "retry_jitter": false,
    });
    if let (Some(task), Value::Object(settings)) = (task.as_object_mut(), settings) {
        task.extend(settings);
    }
    task
}

/// The attempt id of the first `start` of `handler` in the log that is not
/// in `except`.
fn started_attempt(
    log: &[crate::log::LogEvent],
    handler: &str,
    except: &[&str],
) -> Option<(String, u32)> {
    crate::log::events(log, crate::log::EventKind::Start, handler)
        .find(|event| !except.contains(&event.attempt_id.as_str()))
        .map(|event| (event.attempt_id.clone(), event.pid))
}
