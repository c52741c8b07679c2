//! Dynamic fan-out: a mapped task's instances are assigned to the worker one
//! by one, each with its element and index, retried on their own, and their
//! outputs come back gathered in element order.

use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tributary_proto::v1 as pb;

use super::{task, workflow};
use crate::checks;
use crate::ensure;
use crate::harness::Harness;
use crate::json::Json;
use crate::log::{self, EventKind};

/// `conformance/values.json`, built into the runner: the elements mapped over.
const VALUES: &str = include_str!("../../values.json");

/// Every element reaches its own instance unchanged and comes back in its
/// place; a failing instance is retried alone; an empty array runs nothing.
pub async fn map_instances(harness: &mut Harness) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Values {
        values: Vec<Box<RawValue>>,
    }
    let values: Values =
        serde_json::from_str(VALUES).map_err(|error| format!("values.json: {error}"))?;
    let items = format!(
        "[{}]",
        values
            .values
            .iter()
            .map(|value| value.get())
            .collect::<Vec<_>>()
            .join(",")
    );
    let elements = values.values.len();
    harness.spawn_worker("worker-1", 4, 0).await?;
    harness
        .register(workflow(
            "map",
            vec![
                task(
                    "each",
                    "map_echo",
                    &[],
                    json!({"map_over": "items", "map_output": "map_echo_out"}),
                ),
                task(
                    "flaky",
                    "fail_once",
                    &[],
                    json!({
                        "map_over": "items",
                        "map_output": "fail_once_attempt",
                        "retry_attempts": 1,
                    }),
                ),
            ],
        ))
        .await?;
    let run_id = harness
        .start_run("map", &format!(r#"{{"items":{items}}}"#))
        .await?;
    let empty_id = harness.start_run("map", r#"{"items":[]}"#).await?;

    let run = harness.wait_run(&run_id).await?;
    checks::status(&run, pb::RunStatus::Succeeded)?;
    let each = instances(&run, "each", elements)?;
    for instance in each {
        ensure!(
            instance.state() == pb::TaskState::Succeeded && instance.attempts.len() == 1,
            "instance {} of each must succeed after 1 attempt: {}",
            instance.map_index(),
            instance_summary(instance)
        );
    }
    let flaky = instances(&run, "flaky", elements)?;
    for instance in flaky {
        ensure!(
            instance.state() == pb::TaskState::Succeeded
                && instance.attempts.len() == 2
                && instance.attempts[0].error.contains("fail_once: attempt 1"),
            "instance {} of flaky must fail once with \"fail_once: attempt 1\", then succeed: {}",
            instance.map_index(),
            instance_summary(instance)
        );
    }
    let gathered = checks::output(&run, "map_echo_out")?;
    let Json::Array(gathered) = gathered else {
        return Err(format!(
            "map_echo_out must be the gathered array, got {}",
            gathered.brief(200)
        ));
    };
    ensure!(
        gathered.len() == elements,
        "map_echo_out must have {elements} elements, got {}",
        gathered.len()
    );
    for (index, (found, sent)) in gathered.iter().zip(&values.values).enumerate() {
        let sent = Json::parse(sent.get())?;
        ensure!(
            found == &sent,
            "element {index} came back changed or out of place: sent {}, got {}",
            sent.brief(200),
            found.brief(200)
        );
    }
    let twos = format!("[{}]", vec!["2"; elements].join(","));
    checks::output_equals(&run, "fail_once_attempt", &twos)?;
    let starts = log::events(&harness.log()?, EventKind::Start, "map_echo").count();
    ensure!(
        starts == elements,
        "the log must show one start of map_echo per element ({elements}), shows {starts}"
    );

    let empty = harness.wait_run(&empty_id).await?;
    checks::status(&empty, pb::RunStatus::Succeeded)?;
    for task_id in ["each", "flaky"] {
        let task = checks::task(&empty, task_id)?;
        ensure!(
            task.attempts.is_empty() && task.instances.is_empty(),
            "{task_id} over an empty array must run nothing: {}",
            checks::summary(&empty)
        );
    }
    checks::output_equals(&empty, "map_echo_out", "[]")?;
    checks::output_equals(&empty, "fail_once_attempt", "[]")?;
    Ok(())
}

/// The instances of the mapped task `task_id`, checked to be `count`, in
/// index order.
fn instances<'a>(
    run: &'a pb::Run,
    task_id: &str,
    count: usize,
) -> Result<&'a [pb::TaskRun], String> {
    let task = checks::task(run, task_id)?;
    ensure!(
        task.instances.len() == count && task.map_size as usize == count,
        "{task_id} must have {count} instances, lists {} with map_size {}",
        task.instances.len(),
        task.map_size
    );
    for (index, instance) in task.instances.iter().enumerate() {
        ensure!(
            instance.map_index == u32::try_from(index).ok(),
            "{task_id}'s instance {index} is listed with map_index {:?}",
            instance.map_index
        );
    }
    Ok(&task.instances)
}

/// An instance's state and its attempts' errors.
fn instance_summary(instance: &pb::TaskRun) -> String {
    let errors: Vec<String> = instance
        .attempts
        .iter()
        .map(|attempt| {
            format!(
                "{} {}",
                attempt
                    .state()
                    .as_str_name()
                    .trim_start_matches("ATTEMPT_STATE_"),
                crate::json::brief(&attempt.error, 160)
            )
        })
        .collect();
    format!(
        "{} [{}]",
        instance
            .state()
            .as_str_name()
            .trim_start_matches("TASK_STATE_"),
        errors.join(", ")
    )
}
