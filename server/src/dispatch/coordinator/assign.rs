//! Assigning READY tasks to executors with free slots, within the limits of
//! attempts in flight that tasks put on their handlers.

use std::collections::BTreeSet;

use super::{AfterCommit, Coordinator};
use crate::clock::now_unix_ms;
use crate::dispatch::executors::ExecutorCommand;
use crate::dispatch::held_values::WireInput;

impl Coordinator {
    /// Assigns ready tasks to executors with free slots.
    pub(super) fn dispatch(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let now_ms = now_unix_ms();
        let mut assigned_to = BTreeSet::new();
        for key in self.ready.keys() {
            while !self.handler_in_flight.at_limit(&key) {
                let Some(executor) = self.executors.least_loaded(&key.handler, key.required())
                else {
                    break;
                };
                let executor_id = executor.id.clone();
                let instance_id = executor.registration.instance_id.clone();
                let Some((run_id, task)) = self.ready.pop(&key) else {
                    break;
                };
                let Some(run) = self.runs.get_mut(&run_id) else {
                    continue;
                };
                let attempt_id = uuid::Uuid::now_v7().to_string();
                let Some((assignment, timeout)) =
                    run.assign(task, attempt_id.clone(), &executor_id, &instance_id, now_ms)
                else {
                    continue;
                };
                let workflow_name = run.plan().workflow_name.clone();
                assigned_to.insert(executor_id.clone());
                if let Some(executor) = self.executors.get_mut(&executor_id) {
                    executor.in_flight.insert(attempt_id.clone());
                    self.handler_in_flight.started(&attempt_id, &key.handler);
                }
                self.attempt_runs.insert(attempt_id, run_id.clone());
                self.apply_actions(&run_id, vec![timeout]);
                self.mark_dirty(&run_id);
                self.after_commit.push(AfterCommit::Send {
                    executor_id,
                    command: ExecutorCommand::Assign {
                        run_id,
                        workflow_name,
                        assignment: Box::new(assignment),
                        input: WireInput::default(),
                    },
                });
            }
        }
        let over = self
            .executors
            .over_capacity(assigned_to.iter().map(String::as_str));
        if !over.is_empty() {
            tracing::error!(executors = ?over, "capacity invariant violated");
        }
    }
}
