//! Which instances of mapped tasks a `GetRun` answer lists: the window the
//! caller asked for, trimmed to what fits in one message, with every
//! instance counted by state whether listed or not. A map may have 100,000
//! instances, a few hundred bytes each: more than one message holds.

use std::collections::BTreeMap;

use prost::Message;
use tributary_proto::v1 as pb;

use super::convert::fit_run_contexts;

/// The instances a caller asked for under each mapped task.
#[derive(Debug, Clone, Copy, Default)]
pub struct InstanceWindow {
    /// The element index of the first instance listed.
    pub from: u32,
    /// At most this many listed; `None` for no limit of the caller's own.
    pub max: Option<u32>,
}

/// Counts each mapped task's instances by state, keeps only the window's,
/// then fits the run in `budget` bytes: the contexts come first (left out
/// only if they do not fit beside everything but the instances), then as
/// many instances as fit, the same number under every mapped task.
pub fn fit_run(run: &mut pb::Run, window: InstanceWindow, omit_contexts: bool, budget: usize) {
    for task in &mut run.tasks {
        if task.map_size == 0 && task.instances.is_empty() {
            continue;
        }
        task.instance_counts = count_by_state(&task.instances);
        let from = (window.from as usize).min(task.instances.len());
        task.instances.drain(..from);
        if let Some(max) = window.max {
            task.instances.truncate(max as usize);
        }
    }
    let lists: Vec<Vec<pb::TaskRun>> = run
        .tasks
        .iter_mut()
        .map(|task| std::mem::take(&mut task.instances))
        .collect();
    if omit_contexts {
        super::convert::omit_run_contexts(run);
    } else {
        fit_run_contexts(run, &mut budget.clone());
    }
    for (task, instances) in run.tasks.iter_mut().zip(lists) {
        task.instances = instances;
    }
    trim_instances(run, budget);
}

/// How many instances are in each state, in the states' order.
fn count_by_state(instances: &[pb::TaskRun]) -> Vec<pb::TaskStateCount> {
    let mut counts: BTreeMap<i32, u32> = BTreeMap::new();
    for instance in instances {
        *counts.entry(instance.state).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(state, count)| pb::TaskStateCount { state, count })
        .collect()
}

/// Trims every mapped task's list to the longest common length at which the
/// run fits in `budget` bytes.
fn trim_instances(run: &mut pb::Run, budget: usize) {
    if run.encoded_len() <= budget {
        return;
    }
    let longest = run
        .tasks
        .iter()
        .map(|task| task.instances.len())
        .max()
        .unwrap_or(0);
    // An entry costs its length, the length's varint and a tag byte; the
    // margin covers the task's own length prefix growing by a few bytes.
    let entry_costs: Vec<Vec<usize>> = run
        .tasks
        .iter()
        .map(|task| {
            task.instances
                .iter()
                .map(|instance| {
                    let length = instance.encoded_len();
                    1 + prost::length_delimiter_len(length) + length
                })
                .collect()
        })
        .collect();
    let listed: usize = entry_costs.iter().flatten().sum();
    let without = run.encoded_len().saturating_sub(listed) + 16 * run.tasks.len();
    let size_at = |length: usize| -> usize {
        without
            + entry_costs
                .iter()
                .map(|costs| costs.iter().take(length).sum::<usize>())
                .sum::<usize>()
    };
    // The largest length that fits, by bisection: sizes grow with it.
    let (mut fits, mut too_long) = (0, longest);
    while too_long - fits > 1 {
        let middle = fits + (too_long - fits) / 2;
        if size_at(middle) <= budget {
            fits = middle;
        } else {
            too_long = middle;
        }
    }
    for task in &mut run.tasks {
        task.instances.truncate(fits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(index: u32, state: pb::TaskState, error: &str) -> pb::TaskRun {
        pb::TaskRun {
            task_id: "fetch".to_owned(),
            state: state as i32,
            error: error.to_owned(),
            map_index: Some(index),
            ..pb::TaskRun::default()
        }
    }

    fn mapped_run(size: u32, error: &str, context: &str) -> pb::Run {
        let instances: Vec<pb::TaskRun> = (0..size)
            .map(|index| {
                let state = if index.is_multiple_of(3) {
                    pb::TaskState::Failed
                } else {
                    pb::TaskState::Succeeded
                };
                instance(index, state, error)
            })
            .collect();
        pb::Run {
            id: "run".to_owned(),
            context_json: context.to_owned(),
            tasks: vec![
                pb::TaskRun {
                    task_id: "fetch".to_owned(),
                    map_size: size,
                    instances,
                    ..pb::TaskRun::default()
                },
                pb::TaskRun {
                    task_id: "report".to_owned(),
                    ..pb::TaskRun::default()
                },
            ],
            ..pb::Run::default()
        }
    }

    fn indexes(task: &pb::TaskRun) -> Vec<u32> {
        task.instances
            .iter()
            .filter_map(|instance| instance.map_index)
            .collect()
    }

    fn counts(task: &pb::TaskRun) -> Vec<(pb::TaskState, u32)> {
        task.instance_counts
            .iter()
            .map(|count| (count.state(), count.count))
            .collect()
    }

    #[test]
    fn a_run_that_fits_lists_every_instance_and_counts_them() {
        let mut run = mapped_run(6, "", "{}");
        fit_run(&mut run, InstanceWindow::default(), false, 1 << 20);
        assert_eq!(indexes(&run.tasks[0]), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(
            counts(&run.tasks[0]),
            vec![(pb::TaskState::Succeeded, 4), (pb::TaskState::Failed, 2)]
        );
        assert!(run.tasks[1].instance_counts.is_empty());
        assert_eq!(run.context_json, "{}");
    }

    #[test]
    fn the_window_lists_from_an_index_and_counts_all() {
        let mut run = mapped_run(10, "", "{}");
        let window = InstanceWindow {
            from: 4,
            max: Some(3),
        };
        fit_run(&mut run, window, false, 1 << 20);
        assert_eq!(indexes(&run.tasks[0]), vec![4, 5, 6]);
        let total: u32 = run.tasks[0].instance_counts.iter().map(|c| c.count).sum();
        assert_eq!(total, 10);

        let mut past_the_end = mapped_run(10, "", "{}");
        let window = InstanceWindow {
            from: 50,
            max: None,
        };
        fit_run(&mut past_the_end, window, false, 1 << 20);
        assert!(past_the_end.tasks[0].instances.is_empty());

        let mut counts_only = mapped_run(10, "", "{}");
        let window = InstanceWindow {
            from: 0,
            max: Some(0),
        };
        fit_run(&mut counts_only, window, false, 1 << 20);
        assert!(counts_only.tasks[0].instances.is_empty());
        assert_eq!(counts_only.tasks[0].instance_counts.len(), 2);
    }

    #[test]
    fn a_large_map_is_trimmed_to_the_longest_prefix_that_fits() {
        let error = "e".repeat(1_000);
        let budget = 100_000;
        let mut run = mapped_run(1_000, &error, r#"{"kept":true}"#);
        fit_run(&mut run, InstanceWindow::default(), false, budget);
        let listed = run.tasks[0].instances.len();
        assert!(run.encoded_len() <= budget, "{} bytes", run.encoded_len());
        assert!(listed >= 90, "{listed} listed");
        assert_eq!(
            indexes(&run.tasks[0]),
            (0..listed as u32).collect::<Vec<_>>()
        );
        let total: u32 = run.tasks[0].instance_counts.iter().map(|c| c.count).sum();
        assert_eq!(total, 1_000);
        // One more would not have fitted.
        let mut one_more = mapped_run(listed as u32 + 1, &error, r#"{"kept":true}"#);
        for task in &mut one_more.tasks {
            task.instance_counts = count_by_state(&task.instances);
        }
        assert!(one_more.encoded_len() > budget);
        assert_eq!(
            run.context_json, r#"{"kept":true}"#,
            "the context comes first"
        );
    }

    #[test]
    fn a_context_too_large_for_the_answer_is_left_out_before_any_instance() {
        let budget = 50_000;
        let context = format!(r#"{{"big":"{}"}}"#, "x".repeat(60_000));
        let mut run = mapped_run(10, "", &context);
        fit_run(&mut run, InstanceWindow::default(), false, budget);
        assert!(run.contexts_omitted);
        assert_eq!(run.tasks[0].instances.len(), 10);
    }
}
