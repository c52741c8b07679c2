//! READY tasks waiting for an executor, per namespace and handler. Within a
//! handler, runs take turns (round-robin), so a run with a 10,000-wide
//! fan-out cannot starve a small run that became ready after it.

use std::collections::{HashMap, VecDeque};

use crate::engine::plan::TaskIndex;

/// Where a ready task waits: its namespace and handler.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandlerKey {
    pub namespace: String,
    pub handler: String,
}

#[derive(Debug, Default)]
struct HandlerQueue {
    /// Runs with waiting tasks, in turn order; each run appears once.
    turn: VecDeque<String>,
    tasks: HashMap<String, VecDeque<TaskIndex>>,
}

#[derive(Debug, Default)]
pub struct ReadyQueue {
    queues: HashMap<HandlerKey, HandlerQueue>,
}

impl ReadyQueue {
    pub fn push(&mut self, key: HandlerKey, run_id: &str, task: TaskIndex) {
        let queue = self.queues.entry(key).or_default();
        let tasks = queue.tasks.entry(run_id.to_owned()).or_default();
        if tasks.is_empty() {
            queue.turn.push_back(run_id.to_owned());
        }
        tasks.push_back(task);
    }

    /// The next task for `key`: the first task of the run whose turn it is;
    /// that run then goes to the back of the line.
    pub fn pop(&mut self, key: &HandlerKey) -> Option<(String, TaskIndex)> {
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

    /// Handlers with waiting tasks, sorted so dispatch is deterministic.
    pub fn keys(&self) -> Vec<HandlerKey> {
        let mut keys: Vec<HandlerKey> = self.queues.keys().cloned().collect();
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

    /// How many tasks wait for each handler key.
    pub fn len(&self, key: &HandlerKey) -> usize {
        self.queues
            .get(key)
            .map(|queue| queue.tasks.values().map(VecDeque::len).sum())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> HandlerKey {
        HandlerKey {
            namespace: "default".into(),
            handler: "h".into(),
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
        assert_eq!(queue.len(&key()), 1);
        assert_eq!(queue.pop(&key()), Some(("b".to_owned(), 1)));
        assert_eq!(queue.pop(&key()), None);
    }
}
