//! When each task's handler started and finished, on one clock (this
//! process's monotonic clock), and the dispatch latencies derived from it.
//!
//! A dependant's dispatch latency is the time from the last of its
//! dependencies returning from its handler to its own handler being
//! entered. That spans, in order: the worker sending `Completed`, the
//! server committing the result and the newly ready task's assignment in
//! one transaction, the server sending `Assign`, and the worker decoding it
//! and starting the handler. It is therefore an upper bound of the
//! "`Completed` sent to `Assign` received" interval, by the SDK's own work
//! on both sides.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tributary::{Context, Task, TaskError, Workflow};

/// The input-context key carrying a run's index within a scenario.
pub const RUN_KEY: &str = "bench_run";

/// Handler start and end times of every task of `runs` runs of one
/// workflow.
pub struct Timeline {
    epoch: Instant,
    tasks_per_run: usize,
    runs: usize,
    /// Nanoseconds since `epoch`, plus one; 0 means "not yet".
    starts: Vec<AtomicU64>,
    ends: Vec<AtomicU64>,
}

impl Timeline {
    pub fn new(runs: usize, tasks_per_run: usize) -> Arc<Timeline> {
        let slots = runs * tasks_per_run;
        Arc::new(Timeline {
            epoch: Instant::now(),
            tasks_per_run,
            runs,
            starts: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            ends: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    fn slot(&self, run: usize, task: usize) -> Option<usize> {
        (run < self.runs && task < self.tasks_per_run).then(|| run * self.tasks_per_run + task)
    }

    fn started(&self, run: usize, task: usize) {
        if let Some(slot) = self.slot(run, task) {
            // The first attempt's start counts; a retry would only add
            // its delay to the figure.
            let _ = self.starts[slot].compare_exchange(
                0,
                self.now(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn finished(&self, run: usize, task: usize) {
        if let Some(slot) = self.slot(run, task) {
            self.ends[slot].store(self.now(), Ordering::Relaxed);
        }
    }

    /// The dispatch latency of every task that has dependencies, in every
    /// run; `dependencies[t]` lists the indexes of task `t`'s dependencies.
    /// Tasks that never ran (a failed run) are left out.
    pub fn dispatch_latencies(&self, dependencies: &[Vec<usize>]) -> Vec<Duration> {
        let mut latencies = Vec::new();
        for run in 0..self.runs {
            for (task, dependencies) in dependencies.iter().enumerate() {
                if dependencies.is_empty() {
                    continue;
                }
                let Some(slot) = self.slot(run, task) else {
                    continue;
                };
                let start = self.starts[slot].load(Ordering::Relaxed);
                let ready = dependencies
                    .iter()
                    .filter_map(|&dependency| self.slot(run, dependency))
                    .map(|slot| self.ends[slot].load(Ordering::Relaxed))
                    .max()
                    .unwrap_or(0);
                if start == 0 || ready == 0 {
                    continue;
                }
                latencies.push(Duration::from_nanos(start.saturating_sub(ready)));
            }
        }
        latencies
    }
}

/// `workflow` with every handler wrapped to record its start and end in
/// `timeline`, and the dependency indexes the latencies need. Tasks take
/// the first slots, in the workflow's order; the instances of a mapped task
/// (at most one per workflow) the slots after them, by element index: an
/// instance depends on the mapped task's dependencies, and the mapped
/// task's dependants on every instance (the mapped task runs nothing).
pub fn timed(workflow: &Workflow, timeline: &Arc<Timeline>) -> (Workflow, Vec<Vec<usize>>) {
    let ids: Vec<&str> = workflow.tasks().iter().map(|task| task.id()).collect();
    let base = ids.len();
    let instances = timeline.tasks_per_run.saturating_sub(base);
    let mapped = workflow
        .tasks()
        .iter()
        .position(|task| !task.definition().map_over.is_empty());
    let mut dependencies: Vec<Vec<usize>> = workflow
        .tasks()
        .iter()
        .map(|task| {
            task.definition()
                .dependencies
                .iter()
                .filter_map(|dependency| ids.iter().position(|id| id == dependency))
                .flat_map(|dependency| {
                    if Some(dependency) == mapped {
                        (base..base + instances).collect::<Vec<_>>()
                    } else {
                        vec![dependency]
                    }
                })
                .collect()
        })
        .collect();
    if let Some(mapped) = mapped {
        let of_instances = std::mem::take(&mut dependencies[mapped]);
        dependencies.extend((0..instances).map(|_| of_instances.clone()));
    }
    let mut timed = Workflow::new(workflow.name());
    for (index, task) in workflow.tasks().iter().enumerate() {
        let handler = task.handler();
        let timeline = timeline.clone();
        timed = timed.task(Task::from_definition(
            task.definition().clone(),
            move |context: &mut Context<serde_json::Value>| {
                let (handler, timeline) = (handler.clone(), timeline.clone());
                Box::pin(async move {
                    let run: usize = context
                        .get(RUN_KEY)
                        .map_err(|error| TaskError::fatal(error.to_string()))?;
                    let slot = match context.get::<usize>(tributary::MAP_INDEX_KEY) {
                        Ok(element) if Some(index) == mapped => base + element,
                        _ => index,
                    };
                    timeline.started(run, slot);
                    let outcome = handler(context).await;
                    timeline.finished(run, slot);
                    outcome
                })
            },
        ));
    }
    (timed, dependencies)
}

/// Percentiles of a set of durations (nearest rank).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(mut samples: Vec<Duration>) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |quantile: f64| {
            let index = (quantile * samples.len() as f64).ceil() as usize;
            millis(samples[index.clamp(1, samples.len()) - 1])
        };
        Some(Percentiles {
            samples: samples.len(),
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            max_ms: rank(1.0),
        })
    }
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let percentiles = Percentiles::of(samples).expect("samples");
        assert_eq!(percentiles.samples, 100);
        assert_eq!(percentiles.p50_ms, 50.0);
        assert_eq!(percentiles.p90_ms, 90.0);
        assert_eq!(percentiles.p99_ms, 99.0);
        assert_eq!(percentiles.max_ms, 100.0);
        assert_eq!(Percentiles::of(Vec::new()), None);
        let one = Percentiles::of(vec![Duration::from_millis(7)]).expect("one");
        assert_eq!((one.p50_ms, one.max_ms), (7.0, 7.0));
    }

    #[test]
    fn a_dependant_waits_for_its_last_dependency() {
        let timeline = Timeline::new(1, 3);
        timeline.starts[0].store(10, Ordering::Relaxed);
        timeline.ends[0].store(20, Ordering::Relaxed);
        timeline.starts[1].store(21, Ordering::Relaxed);
        timeline.ends[1].store(50, Ordering::Relaxed);
        timeline.starts[2].store(58, Ordering::Relaxed);
        timeline.ends[2].store(60, Ordering::Relaxed);
        let latencies = timeline.dispatch_latencies(&[vec![], vec![0], vec![0, 1]]);
        assert_eq!(
            latencies,
            [Duration::from_nanos(1), Duration::from_nanos(8)]
        );
    }
}
