//! Runs coming and going: recovery at start, starting (alone or a turn's
//! worth together), cancelling, and forgetting finished runs.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{AfterCommit, Coordinator};
use crate::clock::now_unix_ms;
use crate::dispatch::handle::{
    CancelOutcome, DispatchError, StartReply, StartRunCommand, StartedRun,
};
use crate::dispatch::ready_queue::ReadyKey;
use crate::dispatch::timers::TimerKind;
use crate::engine::concurrency::RunPolicy;
use crate::engine::plan::WorkflowPlan;
use crate::engine::records::{CreateRunOutcome, NewRun, RunRecord};
use crate::engine::run::{Action, RunState};
use crate::store::{StoreError, StoredWorkflow, VersionSelector};

impl Coordinator {
    /// Loads every active run. Their READY tasks are queued, retries and
    /// timeouts re-armed, and attempts that were in flight become orphans:
    /// their executors have one lease timeout to reconnect and reclaim them
    /// before they are re-queued.
    pub(super) async fn recover(&mut self) -> Result<(), StoreError> {
        let active = self.store.load_active_runs().await?;
        let records: Vec<_> = active
            .iter()
            .map(|(detail, _)| detail.run.clone())
            .collect();
        self.recover_keys(&records).await?;
        let mut restored = 0;
        for (detail, last_sequence) in active {
            let run_id = detail.run.id.clone();
            let plan = self.recovered_plan(&detail.run).await?;
            match RunState::restore(plan, self.settings.run, &detail, last_sequence + 1) {
                Ok((run, actions)) => {
                    for (task, attempt_id) in run.attempts_in_flight() {
                        // Still running somewhere, most likely: it counts
                        // against its handler's limit until it is settled.
                        let key = ReadyKey::for_unit(&run, task);
                        self.handler_in_flight.started(&attempt_id, &key.handler);
                        self.orphans.insert(attempt_id.clone(), run_id.clone());
                        self.attempt_runs.insert(attempt_id, run_id.clone());
                    }
                    self.observer
                        .run_recovered(&run_id, detail.run.created_at_ms);
                    self.runs.insert(run_id.clone(), run);
                    self.apply_actions(&run_id, actions);
                    restored += 1;
                }
                Err(error) => {
                    tracing::error!(run_id, %error, "cannot restore the run; leaving it as stored");
                }
            }
        }
        if restored > 0 {
            tracing::info!(
                runs = restored,
                orphaned_attempts = self.orphans.len(),
                "restored active runs"
            );
        }
        Ok(())
    }

    /// Opens the window in which executors reclaim the attempts they held
    /// before the restart: one lease timeout from now, when the server is
    /// about to accept connections (not from when recovery began).
    pub(super) fn open_reclaim_window(&mut self) {
        let reclaim_deadline = now_unix_ms().saturating_add(self.lease_ms());
        for attempt_id in self.orphans.keys() {
            self.timers.insert(
                reclaim_deadline,
                TimerKind::ReclaimDeadline {
                    attempt_id: attempt_id.clone(),
                },
            );
        }
    }

    /// The plan of a recovered run's workflow version, read from the
    /// database once per version.
    pub(super) async fn recovered_plan(
        &mut self,
        run: &RunRecord,
    ) -> Result<Arc<WorkflowPlan>, StoreError> {
        let key = (
            run.namespace.clone(),
            run.workflow_name.clone(),
            run.workflow_version.clone(),
        );
        if let Some(plan) = self.plans.get(&key) {
            return Ok(plan.clone());
        }
        let workflow = self
            .store
            .get_workflow(
                &run.namespace,
                &run.workflow_name,
                &VersionSelector::Version(run.workflow_version.clone()),
            )
            .await?;
        Ok(self.plan_for(&run.namespace, &workflow))
    }

    pub(super) fn plan_for(
        &mut self,
        namespace: &str,
        workflow: &StoredWorkflow,
    ) -> Arc<WorkflowPlan> {
        let key = (
            namespace.to_owned(),
            workflow.spec.name.clone(),
            workflow.version.clone(),
        );
        self.plans
            .entry(key)
            .or_insert_with(|| Arc::new(WorkflowPlan::new(&workflow.spec, &workflow.version)))
            .clone()
    }

    /// Active runs of `namespace` on this server.
    pub(super) fn active_runs_in(&self, namespace: &str) -> usize {
        self.runs
            .values()
            .filter(|run| run.namespace() == namespace)
            .count()
    }

    /// Refuses a new run of `namespace` that already has `active` runs when
    /// its quota is full.
    pub(super) fn check_run_quota(
        &self,
        namespace: &str,
        active: usize,
    ) -> Result<(), DispatchError> {
        let quota = self.settings.max_active_runs_per_namespace;
        if active >= quota {
            return Err(DispatchError::QuotaExceeded(format!(
                "namespace {namespace:?} already has {active} active runs, the max_active_runs_per_namespace quota of {quota}; start more when some have finished"
            )));
        }
        Ok(())
    }

    /// The in-memory state of a new run and the rows that record it.
    pub(super) fn prepare_run(
        &mut self,
        command: &StartRunCommand,
    ) -> Result<(RunState, NewRun, Vec<Action>), DispatchError> {
        let plan = self.plan_for(&command.namespace, &command.workflow);
        let run_id = uuid::Uuid::now_v7().to_string();
        Ok(RunState::start(
            run_id,
            command.namespace.clone(),
            plan,
            self.settings.run,
            &command.input_context_json,
            command.idempotency_key.clone(),
            command.request_hash.clone(),
            now_unix_ms(),
        )?)
    }

    /// Makes a committed run live: in memory, its first tasks queued.
    pub(super) fn activate_run(
        &mut self,
        run: RunState,
        new_run: &NewRun,
        actions: Vec<Action>,
    ) -> StartedRun {
        tracing::debug!(
            run_id = new_run.id,
            workflow = new_run.workflow_name,
            "run started"
        );
        self.runs.insert(new_run.id.clone(), run);
        self.apply_actions(&new_run.id, actions);
        StartedRun {
            run_id: new_run.id.clone(),
            workflow_version: new_run.workflow_version.clone(),
            created: true,
        }
    }

    pub(super) async fn start_run(
        &mut self,
        command: StartRunCommand,
    ) -> Result<StartedRun, DispatchError> {
        if let (Some(key), Some(policy)) = (
            command.concurrency_key.clone(),
            command.workflow.spec.concurrency.as_ref(),
        ) {
            let policy = RunPolicy {
                max_active_runs: policy.max_active_runs,
                strategy: policy.strategy,
            };
            return self.start_keyed_run(command, key, policy).await;
        }
        self.check_run_quota(&command.namespace, self.active_runs_in(&command.namespace))?;
        let (run, new_run, actions) = self.prepare_run(&command)?;
        match self.store.create_run(&new_run).await? {
            CreateRunOutcome::Created(events) => self.publish(events),
            CreateRunOutcome::IdempotencyKeyTaken(existing) => {
                return if existing.request_hash == command.request_hash {
                    Ok(StartedRun {
                        run_id: existing.id,
                        workflow_version: existing.workflow_version,
                        created: false,
                    })
                } else {
                    Err(DispatchError::IdempotencyKeyReused {
                        key: command.idempotency_key.unwrap_or_default(),
                        run_id: existing.id,
                    })
                };
            }
        }
        Ok(self.activate_run(run, &new_run, actions))
    }

    /// Starts runs without idempotency keys in one transaction. If the
    /// database refuses it, each run is tried on its own, so one bad run
    /// cannot fail the others.
    pub(super) async fn start_runs(&mut self, starts: Vec<(StartRunCommand, StartReply)>) {
        if starts.is_empty() {
            return;
        }
        let mut prepared = Vec::with_capacity(starts.len());
        let mut new_runs = Vec::with_capacity(starts.len());
        // Active runs per namespace, counted once per turn and then kept up
        // with the runs this turn admits.
        let mut active: HashMap<String, usize> = HashMap::new();
        for (command, reply) in starts {
            let count = match active.get(&command.namespace) {
                Some(count) => *count,
                None => self.active_runs_in(&command.namespace),
            };
            if let Err(error) = self.check_run_quota(&command.namespace, count) {
                let _ = reply.send(Err(error));
                continue;
            }
            active.insert(command.namespace.clone(), count + 1);
            match self.prepare_run(&command) {
                Ok((run, new_run, actions)) => {
                    prepared.push((command, run, actions, reply));
                    new_runs.push(new_run);
                }
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            }
        }
        match self.store.create_runs(&new_runs).await {
            Ok(events) => {
                self.publish(events);
                for ((_, run, actions, reply), new_run) in prepared.into_iter().zip(&new_runs) {
                    let started = self.activate_run(run, new_run, actions);
                    let _ = reply.send(Ok(started));
                }
            }
            Err(error) => {
                self.observer.metrics().database_error("create_runs");
                tracing::warn!(%error, runs = new_runs.len(), "creating runs together failed; creating them one by one");
                for ((command, _, _, reply), _) in prepared.into_iter().zip(&new_runs) {
                    let _ = reply.send(self.start_run(command).await);
                }
            }
        }
    }

    pub(super) fn cancel_run(
        &mut self,
        namespace: &str,
        run_id: &str,
        reply: oneshot::Sender<CancelOutcome>,
    ) {
        let Some(run) = self
            .runs
            .get_mut(run_id)
            .filter(|run| run.namespace() == namespace)
        else {
            let _ = reply.send(CancelOutcome::NotActive);
            return;
        };
        let mut actions = Vec::new();
        if run.cancel(now_unix_ms(), &mut actions).is_err() {
            let _ = reply.send(CancelOutcome::NotActive);
            return;
        }
        self.apply_actions(run_id, actions);
        self.after_commit.push(AfterCommit::ReplyCancel(reply));
    }

    pub(super) fn forget_run(&mut self, run_id: &str) {
        self.release_ended_run(run_id);
        self.forget_values(run_id);
        self.runs.remove(run_id);
        self.ready.remove_run(run_id);
        self.timers.remove_run(run_id);
        self.attempt_runs
            .retain(|_, attempt_run| attempt_run != run_id);
    }
}
