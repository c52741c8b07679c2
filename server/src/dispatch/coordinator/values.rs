//! Context values by reference: what an `Assign` sends by value and what by
//! name, the answers to `fetch_values`, and telling executors to forget the
//! values of runs that ended. The bookkeeping per connection is
//! [`HeldValues`](crate::dispatch::held_values::HeldValues).

use std::sync::Arc;

use serde_json::value::RawValue;

use super::Coordinator;
use crate::dispatch::executors::ExecutorCommand;
use crate::dispatch::held_values::{ValueName, WireInput};

impl Coordinator {
    /// Sends to an executor without waiting, an `Assign` in the form this
    /// connection takes it, followed by `ForgetRun` for the runs whose
    /// values it made the connection's tracker drop.
    pub(super) fn send_now(&mut self, executor_id: &str, command: ExecutorCommand) {
        let mut emptied = Vec::new();
        let command = match command {
            ExecutorCommand::Assign {
                run_id,
                workflow_name,
                mut assignment,
                ..
            } => {
                let context = std::mem::take(&mut assignment.input);
                let input = match (self.executors.get_mut(executor_id), self.runs.get(&run_id)) {
                    (Some(executor), Some(run)) => executor.held.assign_input(
                        &run_id,
                        &context,
                        |task| run.succeeded_attempt(task).cloned(),
                        &mut emptied,
                    ),
                    _ => WireInput {
                        input_context_json: context.to_json(),
                        ..WireInput::default()
                    },
                };
                ExecutorCommand::Assign {
                    run_id,
                    workflow_name,
                    assignment,
                    input,
                }
            }
            command => command,
        };
        self.push(executor_id, command);
        self.send_forgets(executor_id, emptied);
    }

    fn send_forgets(&mut self, executor_id: &str, runs: Vec<Arc<str>>) {
        for run_id in runs {
            self.push(
                executor_id,
                ExecutorCommand::ForgetRun {
                    run_id: run_id.to_string(),
                },
            );
        }
    }

    /// Answers `fetch_values` at once: the values come from results already
    /// committed (an executor learns a value's name only from an `Assign`,
    /// sent after the commit). A run that is not active here, or not in the
    /// executor's namespace, has no values to give.
    pub(super) fn fetch_values(&mut self, executor_id: &str, run_id: String, refs: Vec<ValueName>) {
        let Some(executor) = self.executors.get(executor_id) else {
            return;
        };
        let values: Vec<(ValueName, Arc<RawValue>)> = match self
            .runs
            .get(&run_id)
            .filter(|run| run.namespace() == executor.namespace)
        {
            Some(run) => refs
                .into_iter()
                .filter_map(|name| {
                    let value = run.value_named(&name.key, &name.writer_attempt_id)?;
                    Some((name, value))
                })
                .collect(),
            None => Vec::new(),
        };
        let mut emptied = Vec::new();
        if let Some(executor) = self.executors.get_mut(executor_id) {
            executor.held.sent_values(&run_id, &values, &mut emptied);
        }
        self.push(executor_id, ExecutorCommand::Values { run_id, values });
        self.send_forgets(executor_id, emptied);
    }

    /// The executor's result was accepted: it holds the values it set.
    pub(super) fn hold_produced(
        &mut self,
        executor_id: &str,
        run_id: &str,
        attempt_id: &str,
        set: &[(Arc<str>, Arc<RawValue>)],
    ) {
        let mut emptied = Vec::new();
        if let Some(executor) = self.executors.get_mut(executor_id) {
            executor
                .held
                .produced(run_id, attempt_id, set, &mut emptied);
        }
        self.send_forgets(executor_id, emptied);
    }

    /// The run is over on this server: every connection holding some of its
    /// values is told to drop them.
    pub(super) fn forget_values(&mut self, run_id: &str) {
        for executor_id in self.executors.forget_run_values(run_id) {
            self.push(
                &executor_id,
                ExecutorCommand::ForgetRun {
                    run_id: run_id.to_owned(),
                },
            );
        }
    }
}
