//! Scenarios about context values sent by reference to caching workers
//! (`Register.value_cache_bytes`), read from the `measure` handler's output
//! and the server's counters in ListExecutors.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use tributary_proto::v1 as pb;

use super::{task, workflow};
use crate::checks;
use crate::ensure;
use crate::executors::ExecutorInfo;
use crate::harness::Harness;
use crate::json::Json;
use crate::log::{self, EventKind};

/// The value cache of a caching worker (the SDKs' default).
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Room for the small values (numbers, `measured` objects) next to the
/// large ones when counting bytes sent.
const SMALL_VALUES_BYTES: u64 = 64 * 1024;

/// A chain `produce` (big) → `measure_1` → ... → `measure_<measures>`.
fn chain(name: &str, measures: usize) -> Value {
    let mut tasks = vec![task("produce", "big", &[], json!({}))];
    let mut previous = "produce".to_owned();
    for index in 1..=measures {
        let id = format!("measure_{index}");
        tasks.push(task(&id, "measure", &[previous.as_str()], json!({})));
        previous = id;
    }
    workflow(name, tasks)
}

/// The length of the compact JSON text of `value`, as `measure` reports it.
fn compact_length(value: &Value) -> usize {
    value.to_string().len()
}

/// What `measure` writes for an input of `keys`.
fn measured(input: &[(&str, &Value)]) -> Value {
    Value::Object(
        input
            .iter()
            .map(|(key, value)| ((*key).to_owned(), json!(compact_length(value))))
            .collect(),
    )
}

async fn executor(harness: &Harness, name: &str) -> Result<ExecutorInfo, String> {
    harness
        .executors()
        .await?
        .into_iter()
        .find(|executor| executor.name == name)
        .ok_or_else(|| format!("ListExecutors does not list {name}"))
}

/// Expects `measured.<key>` = `bytes` in the run's final context.
fn expect_measured(run: &pb::Run, key: &str, bytes: u64) -> Result<(), String> {
    let measured = checks::output(run, "measured")?;
    let found = measured.get(key).and_then(Json::as_u64);
    ensure!(
        found == Some(bytes),
        "expected measured.{key} = {bytes}, got {}",
        measured.brief(300)
    );
    Ok(())
}

/// A caching worker gets each large value at most once.
pub async fn references(harness: &mut Harness) -> Result<(), String> {
    const BIG_BYTES: u64 = 1_000_000;
    const PAYLOAD_BYTES: u64 = 500_000;
    harness
        .spawn_worker("worker-caching", 2, CACHE_BYTES)
        .await?;
    harness.register(chain("references", 3)).await?;
    let input = json!({"big_bytes": BIG_BYTES, "payload": "y".repeat(PAYLOAD_BYTES as usize)});
    let run_id = harness.start_run("references", &input.to_string()).await?;
    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Succeeded)?;
    expect_measured(&run, "big", BIG_BYTES + 2)?;
    expect_measured(&run, "payload", PAYLOAD_BYTES + 2)?;
    let counters = executor(harness, "worker-caching").await?;
    // Without references the worker would get the payload four times and
    // the big value three times.
    let at_most_once = (PAYLOAD_BYTES + 2) + (BIG_BYTES + 2) + SMALL_VALUES_BYTES;
    ensure!(
        counters.context_bytes_sent <= at_most_once,
        "the server sent {} bytes of context to the caching worker, more than each large value once ({at_most_once} bytes)",
        counters.context_bytes_sent
    );
    ensure!(
        counters.values_sent_by_reference >= 1,
        "the server sent no value by reference to the caching worker (ListExecutors values_sent_by_reference = 0)"
    );
    Ok(())
}

/// A value the worker could not keep is fetched.
pub async fn reference_fetch(harness: &mut Harness) -> Result<(), String> {
    const BIG_BYTES: u64 = 65_536;
    // The text of `big_bytes` (65536) and of `big` (65,536 x's in quotes):
    // by the server's count, which is each value's text, the cache holds
    // both exactly, so the server names both in measure's Assign; a cache
    // that also counts each entry's name cannot hold both, so the worker
    // must fetch what it could not keep.
    let cache_bytes = BIG_BYTES.to_string().len() as u64 + BIG_BYTES + 2;
    harness
        .spawn_worker("worker-small-cache", 1, cache_bytes)
        .await?;
    harness.register(chain("fetch", 1)).await?;
    let run_id = harness
        .start_run("fetch", &json!({"big_bytes": BIG_BYTES}).to_string())
        .await?;
    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Succeeded)?;
    expect_measured(&run, "big", BIG_BYTES + 2)?;
    let counters = executor(harness, "worker-small-cache").await?;
    ensure!(
        counters.values_sent_by_reference >= 1,
        "the server sent no value by reference to the worker (ListExecutors values_sent_by_reference = 0)"
    );
    // `big` was produced by the worker, so it went to it by value only if
    // the worker fetched it.
    ensure!(
        counters.context_bytes_sent >= BIG_BYTES + 2,
        "the worker never fetched the big value it could not keep (ListExecutors context_bytes_sent = {}, less than its {} bytes; does the cache count each entry's name?)",
        counters.context_bytes_sent,
        BIG_BYTES + 2
    );
    Ok(())
}

/// Caching and non-caching workers share runs and every result is right.
pub async fn mixed_fleet(harness: &mut Harness) -> Result<(), String> {
    const RUNS: usize = 6;
    const BIG_BYTES: u64 = 100_000;
    harness
        .spawn_worker("worker-caching", 1, CACHE_BYTES)
        .await?;
    harness.spawn_worker("worker-plain", 1, 0).await?;
    harness.register(chain("fleet", 2)).await?;
    let big_bytes = json!(BIG_BYTES);
    let payload = json!("z".repeat(50_000));
    let big = json!("x".repeat(BIG_BYTES as usize));
    let first = measured(&[
        ("big_bytes", &big_bytes),
        ("payload", &payload),
        ("big", &big),
    ]);
    let expected = measured(&[
        ("big_bytes", &big_bytes),
        ("payload", &payload),
        ("big", &big),
        ("measured", &first),
    ]);
    let input = json!({"big_bytes": BIG_BYTES, "payload": payload}).to_string();
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        runs.push(harness.start_run("fleet", &input).await?);
    }
    for run_id in runs {
        let run = harness.wait_run(&run_id).await?;
        checks::status(&run, pb::RunStatus::Succeeded)?;
        checks::output_equals(&run, "measured", &expected.to_string())?;
    }
    let events = harness.log()?;
    let processes: BTreeSet<u32> = log::events(&events, EventKind::Start, "measure")
        .map(|event| event.pid)
        .collect();
    ensure!(
        processes.len() == 2,
        "both workers must have run measure tasks, the log shows {} process(es)",
        processes.len()
    );
    Ok(())
}
