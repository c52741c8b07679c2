//! Re-running a finished run (`RetryRun`): the run is read back from the
//! database (a finished run is no longer in memory), rebuilt, reopened by
//! the engine, committed on a checked path of its own, and made live again
//! like a run just started.

use super::Coordinator;
use crate::clock::now_unix_ms;
use crate::dispatch::handle::{DispatchError, RetriedRun, RetryRunCommand};
use crate::engine::concurrency::{KeyScope, RunPolicy};
use crate::engine::records::{
    EventFilter, EventPosition, EventQuery, EventType, RunDetail, RunRetry,
};
use crate::engine::run::{RetryError, RunState};
use crate::events::PAGE_SIZE;
use crate::store::{StoreError, VersionSelector};
use tributary_core::ConcurrencyStrategy;

impl Coordinator {
    pub(super) async fn retry_run(
        &mut self,
        command: RetryRunCommand,
    ) -> Result<RetriedRun, DispatchError> {
        let RetryRunCommand {
            namespace,
            run_id,
            from_task,
            request_id,
        } = command;
        let in_memory = self
            .runs
            .get(&run_id)
            .filter(|run| run.namespace() == namespace);
        if in_memory.is_some_and(|run| run.status().is_terminal()) {
            // It finished in this turn: commit that end (and forget the run)
            // before reading it back.
            self.flush(true).await;
        }
        let (detail, last_sequence) = self.store.load_run(&namespace, &run_id).await?;
        if request_id.is_some() && detail.run.retry_request_id == request_id {
            return self.answer_again(&detail).await;
        }
        if let Some(run) = self
            .runs
            .get(&run_id)
            .filter(|run| run.namespace() == namespace)
        {
            return Err(RetryError::Active {
                run_id,
                status: run.status(),
            }
            .into());
        }
        if !detail.run.status.is_terminal() {
            return Err(RetryError::Active {
                run_id,
                status: detail.run.status,
            }
            .into());
        }
        let key = self.retry_key(&detail).await?;
        let plan = self.recovered_plan(&detail.run).await?;
        let (mut run, _) = RunState::restore(plan, self.settings.run, &detail, last_sequence + 1)
            .map_err(|error| {
            StoreError::Corrupt(format!("run {run_id:?} cannot be rebuilt: {error}"))
        })?;
        let mut actions = Vec::new();
        let summary = run.retry(from_task.as_deref(), now_unix_ms(), &mut actions)?;
        let retried_task_ids: Vec<String> = summary
            .reset
            .iter()
            .map(|&task| run.plan().tasks[task].id.clone())
            .collect();
        let retry = RunRetry {
            changes: run.take_changes(),
            expected_status: detail.run.status,
            expected_retry_count: detail.run.retry_count,
            retry_count: detail.run.retry_count + 1,
            request_id,
            reset_task_ids: retried_task_ids.clone(),
            dropped_map_task_ids: summary
                .dropped_maps
                .iter()
                .map(|&task| run.plan().tasks[task].id.clone())
                .collect(),
        };
        let events = self.store.retry_run(&retry).await?;
        self.publish(events);
        tracing::info!(
            run_id,
            retry_count = retry.retry_count,
            reset = retried_task_ids.len(),
            "run retried"
        );
        let status = run.status();
        if let Some((scope, max_active_runs)) = key {
            // The key had room when checked, and nothing ran since: this
            // admits it.
            self.concurrency.admit(
                &scope,
                &run_id,
                RunPolicy {
                    max_active_runs,
                    strategy: ConcurrencyStrategy::Queue,
                },
            );
        }
        self.runs.insert(run_id.clone(), run);
        self.apply_actions(&run_id, actions);
        Ok(RetriedRun {
            run_id,
            status,
            retry_count: retry.retry_count,
            retried_task_ids,
        })
    }

    /// A finished run with a concurrency key counts against it again once
    /// reopened: refused while the key is full (a retry never queues), and
    /// refused for good when the run never started (it has no tasks).
    async fn retry_key(
        &mut self,
        detail: &RunDetail,
    ) -> Result<Option<(KeyScope, u32)>, DispatchError> {
        let Some(key) = detail.run.concurrency_key.clone() else {
            return Ok(None);
        };
        if detail.tasks.is_empty() {
            return Err(DispatchError::RetryNeverStarted {
                run_id: detail.run.id.clone(),
                key,
            });
        }
        let workflow = self
            .store
            .get_workflow(
                &detail.run.namespace,
                &detail.run.workflow_name,
                &VersionSelector::Version(detail.run.workflow_version.clone()),
            )
            .await?;
        let limit = workflow
            .spec
            .concurrency
            .map_or(1, |policy| policy.max_active_runs);
        let scope = KeyScope {
            namespace: detail.run.namespace.clone(),
            workflow_name: detail.run.workflow_name.clone(),
            key,
        };
        if !self.concurrency.has_room(&scope, limit) {
            return Err(DispatchError::RetryKeyFull {
                run_id: detail.run.id.clone(),
                key: scope.key,
                limit,
            });
        }
        Ok(Some((scope, limit)))
    }

    /// The answer of the run's latest retry, for a repeated call: the tasks
    /// its RUN_RETRIED event reset, and the run's status now.
    async fn answer_again(&self, detail: &RunDetail) -> Result<RetriedRun, DispatchError> {
        let run = &detail.run;
        let mut after = 0;
        let mut latest = None;
        loop {
            let query = EventQuery {
                position: EventPosition::AfterSequence {
                    run_id: run.id.clone(),
                    sequence: after,
                },
                filter: EventFilter {
                    types: vec![EventType::RunRetried],
                    ..EventFilter::default()
                },
                limit: PAGE_SIZE,
            };
            let page = self.store.list_events(&run.namespace, &query).await?;
            let complete = page.len() < PAGE_SIZE as usize;
            if let Some(last) = page.into_iter().last() {
                after = last.sequence;
                latest = Some(last);
            }
            if complete {
                break;
            }
        }
        let retried_task_ids = latest
            .and_then(|event| event.details.retried_task_ids)
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "run {:?} records a retry but no RUN_RETRIED event",
                    run.id
                ))
            })?;
        let status = self
            .runs
            .get(&run.id)
            .map_or(run.status, |active| active.status());
        Ok(RetriedRun {
            run_id: run.id.clone(),
            status,
            retry_count: run.retry_count,
            retried_task_ids,
        })
    }
}
