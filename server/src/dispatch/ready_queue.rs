//! READY tasks waiting for an executor, per namespace, handler and required
//! labels. Within a queue, runs take turns (round-robin), so a run with a
//! 10,000-wide fan-out cannot starve a small run that became ready after it.
//! Tasks requiring labels wait in a queue of their own, so that one no
//! executor can take never holds up the tasks of its handler behind it;
//! tasks limiting their handler's attempts in flight likewise.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tributary_core::Labels;

use crate::engine::plan::TaskIndex;
use crate::engine::run::RunState;

/// The executors a task may go to: those of its namespace serving its
/// handler.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandlerKey {
    pub namespace: String,
    pub handler: String,
}

/// Where a ready task waits: its handler, the labels an executor must
/// have to take it (`None` when it requires none, the common case, which
/// costs nothing to match), and the task's limit of attempts of the handler
/// in flight. Tasks with a limit wait apart from those without, so a
/// handler at one task's limit never holds up the others behind it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReadyKey {
    pub handler: HandlerKey,
    pub labels: Option<Arc<Labels>>,
    pub max_in_flight: Option<u32>,
}

impl ReadyKey {
    /// Where `unit` (a task, or an instance of a mapped task) of `run`
    /// waits.
    pub fn for_unit(run: &RunState, unit: TaskIndex) -> ReadyKey {
        ReadyKey {
            handler: HandlerKey {
                namespace: run.namespace().to_owned(),
                handler: run.handler_of(unit).to_owned(),
            },
            labels: run.required_labels_of(unit).cloned(),
            max_in_flight: run.max_in_flight_of(unit),
        }
    }

    /// The labels required, if any.
    pub fn required(&self) -> Option<&Labels> {
        self.labels.as_deref()
    }
}

#[derive(Debug, Default)]
struct HandlerQueue {
    /// Runs with waiting tasks, in turn order; each run appears once.
    turn: VecDeque<String>,
    tasks: HashMap<String, VecDeque<TaskIndex>>,
}

#[derive(Debug, Default)]
pub struct ReadyQueue {
    queues: HashMap<ReadyKey, HandlerQueue>,
}

impl ReadyQueue {
    pub fn push(&mut self, key: ReadyKey, run_id: &str, task: TaskIndex) {
        let queue = self.queues.entry(key).or_default();
        let tasks = queue.tasks.entry(run_id.to_owned()).or_default();
        if tasks.is_empty() {
            queue.turn.push_back(run_id.to_owned());
        }
        tasks.push_back(task);
    }

    /// The next task for `key`: the first task of the run whose turn it is;
    /// that run then goes to the back of the line.
    pub fn pop(&mut self, key: &ReadyKey) -> Option<(String, TaskIndex)> {
        let queue = self.queues.get_mut(key)?;
        let run_id = queue.turn.pop_front()?;
        let tasks = queue.tasks.get_mut(&run_id)?;
        let task = tasks.pop_front()?;
        if tasks.is_empty() {
            queue.tasks.remove(&run_id);
        } else {
            queue.turn.push_back(run_id.clone());
        }
        if queue.turn.is_empty() {
            self.queues.remove(key);
        }
        Some((run_id, task))
    }

    /// Queues with waiting tasks, sorted so dispatch is deterministic.
    pub fn keys(&self) -> Vec<ReadyKey> {
        let mut keys: Vec<ReadyKey> = self.queues.keys().cloned().collect();
        keys.sort();
        keys
    }

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Forgets every waiting task of a run (it finished or was cancelled).
    pub fn remove_run(&mut self, run_id: &str) {
        self.queues.retain(|_, queue| {
            if queue.tasks.remove(run_id).is_some() {
                queue.turn.retain(|id| id != run_id);
            }
            !queue.turn.is_empty()
        });
    }

    /// How many tasks wait for each handler, whatever labels they require.
    pub fn waiting_by_handler(&self) -> HashMap<&HandlerKey, usize> {
        let mut counts: HashMap<&HandlerKey, usize> = HashMap::new();
        for (key, queue) in &self.queues {
            *counts.entry(&key.handler).or_default() +=
                queue.tasks.values().map(VecDeque::len).sum::<usize>();
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ReadyKey {
        ReadyKey {
            handler: HandlerKey {
                namespace: "default".into(),
                handler: "h".into(),
            },
            labels: None,
            max_in_flight: None,
        }
    }

    #[test]
    fn runs_take_turns() {
        let mut queue = ReadyQueue::default();
        for task in 0..3 {
            queue.push(key(), "big", task);
        }
        queue.push(key(), "small", 0);
        let order: Vec<(String, TaskIndex)> = std::iter::from_fn(|| queue.pop(&key())).collect();
        assert_eq!(
            order,
            [
                ("big".to_owned(), 0),
                ("small".to_owned(), 0),
                ("big".to_owned(), 1),
                ("big".to_owned(), 2)
            ]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn removing_a_run_drops_its_tasks_only() {
        let mut queue = ReadyQueue::default();
        queue.push(key(), "a", 0);
        queue.push(key(), "b", 1);
        queue.remove_run("a");
        assert_eq!(queue.waiting_by_handler().get(&key().handler), Some(&1));
        assert_eq!(queue.pop(&key()), Some(("b".to_owned(), 1)));
        assert_eq!(queue.pop(&key()), None);
    }

    #[test]
    fn tasks_requiring_labels_wait_apart_and_count_for_their_handler() {
        let mut queue = ReadyQueue::default();
        let gpu = ReadyKey {
            labels: Some(Arc::new([("gpu".to_owned(), "true".to_owned())].into())),
            ..key()
        };
        queue.push(gpu.clone(), "a", 0);
        queue.push(key(), "a", 1);
        assert_eq!(queue.keys(), [key(), gpu.clone()]);
        assert_eq!(queue.pop(&key()), Some(("a".to_owned(), 1)));
        assert_eq!(queue.pop(&key()), None);
        assert_eq!(queue.waiting_by_handler().get(&key().handler), Some(&1));
        assert_eq!(queue.pop(&gpu), Some(("a".to_owned(), 0)));
        assert!(queue.is_empty());
    }
}
