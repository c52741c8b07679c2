//! Due times of retries and attempt timeouts, in one ordered structure: the
//! coordinator sleeps until the earliest and never sweeps the database.

use std::collections::BTreeMap;

use crate::engine::plan::TaskIndex;

/// What happens when a timer is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerKind {
    RetryDue {
        run_id: String,
        task: TaskIndex,
    },
    AttemptTimeout {
        run_id: String,
        attempt_id: String,
    },
    /// Check whether an executor's lease has run out.
    LeaseCheck {
        executor_id: String,
    },
    /// After a restart, the attempt's executor had until now to reclaim it.
    ReclaimDeadline {
        attempt_id: String,
    },
}

#[derive(Debug, Default)]
pub struct Timers {
    /// Keyed by due time, then insertion order so equal times stay FIFO.
    due: BTreeMap<(i64, u64), TimerKind>,
    inserted: u64,
}

impl Timers {
    pub fn insert(&mut self, at_ms: i64, kind: TimerKind) {
        self.inserted += 1;
        self.due.insert((at_ms, self.inserted), kind);
    }

    pub fn next_due_ms(&self) -> Option<i64> {
        self.due.keys().next().map(|(at_ms, _)| *at_ms)
    }

    /// Removes and returns every timer due at or before `now_ms`.
    pub fn take_due(&mut self, now_ms: i64) -> Vec<TimerKind> {
        let later = self.due.split_off(&(now_ms.saturating_add(1), 0));
        std::mem::replace(&mut self.due, later)
            .into_values()
            .collect()
    }

    /// Drops the timers of a finished run.
    pub fn remove_run(&mut self, run_id: &str) {
        self.due.retain(|_, kind| match kind {
            TimerKind::RetryDue { run_id: id, .. }
            | TimerKind::AttemptTimeout { run_id: id, .. } => id != run_id,
            TimerKind::LeaseCheck { .. } | TimerKind::ReclaimDeadline { .. } => true,
        });
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(run: &str) -> TimerKind {
        TimerKind::RetryDue {
            run_id: run.into(),
            task: 0,
        }
    }

    #[test]
    fn due_timers_come_out_in_time_order() {
        let mut timers = Timers::default();
        timers.insert(30, retry("c"));
        timers.insert(10, retry("a"));
        timers.insert(20, retry("b"));
        timers.insert(10, retry("a2"));
        assert_eq!(timers.next_due_ms(), Some(10));
        assert_eq!(timers.take_due(20), [retry("a"), retry("a2"), retry("b")]);
        assert_eq!(timers.take_due(29), []);
        assert_eq!(timers.next_due_ms(), Some(30));
        timers.remove_run("c");
        assert!(timers.is_empty());
    }
}
