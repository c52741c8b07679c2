//! Concurrency keys in the coordinator: admitting a new run of a workflow
//! with a concurrency policy (start, queue, refuse, or start and cancel
//! older runs, as `engine::concurrency` decides), starting queued runs when
//! their key has room, cancelling queued runs, and rebuilding the keys after
//! a restart. A queued run lives only in the database and, by id, in
//! [`ConcurrencyKeys`]; it has no `RunState` until it leaves the queue.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use super::Coordinator;
use crate::clock::now_unix_ms;
use crate::dispatch::handle::{CancelOutcome, DispatchError, StartRunCommand, StartedRun};
use crate::engine::concurrency::{
    Admission, KeyScope, RunPolicy, cancelled_queued_run, queued_run, refused_run,
};
use crate::engine::records::{CreateRunOutcome, RunRecord, RunStatus};
use crate::engine::run::RunState;
use crate::store::{StoreError, VersionSelector};

impl Coordinator {
    /// Starts, queues or refuses a run whose workflow has a concurrency
    /// policy, as the key's state decides, and records it.
    pub(super) async fn start_keyed_run(
        &mut self,
        command: StartRunCommand,
        key: String,
        policy: RunPolicy,
    ) -> Result<StartedRun, DispatchError> {
        let scope = KeyScope {
            namespace: command.namespace.clone(),
            workflow_name: command.workflow.spec.name.clone(),
            key,
        };
        let (run, mut new_run, actions) = self.prepare_run(&command)?;
        new_run.concurrency_key = Some(scope.key.clone());
        let run_id = new_run.id.clone();
        let admission = self.concurrency.admit(&scope, &run_id, policy);
        let spared: Vec<String> = match &admission {
            Admission::StartCancelling { cancelled, .. } => cancelled.clone(),
            _ => Vec::new(),
        };
        let (record, activate, cancelled) = match admission {
            Admission::Start => (new_run, true, None),
            Admission::StartCancelling { cancelled, reason } => {
                (new_run, true, Some((cancelled, reason)))
            }
            Admission::Queue { position } => {
                (queued_run(new_run, &scope.key, position), false, None)
            }
            Admission::Cancel { reason } => (refused_run(new_run, &scope.key, reason), false, None),
        };
        if activate
            && let Err(error) =
                self.check_run_quota(&command.namespace, self.active_runs_in(&command.namespace))
        {
            self.withdraw(&scope, &run_id, &spared);
            return Err(error);
        }
        let outcome = match self.store.create_run(&record).await {
            Ok(outcome) => outcome,
            Err(error) => {
                self.withdraw(&scope, &run_id, &spared);
                return Err(error.into());
            }
        };
        match outcome {
            CreateRunOutcome::Created(events) => self.publish(events),
            CreateRunOutcome::IdempotencyKeyTaken(existing) => {
                self.withdraw(&scope, &run_id, &spared);
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
        if let Some((older_runs, reason)) = cancelled {
            for older in older_runs {
                self.cancel_superseded_run(&older, &reason);
            }
        }
        if activate {
            Ok(self.activate_run(run, &record, actions))
        } else {
            Ok(StartedRun {
                run_id,
                workflow_version: record.workflow_version.clone(),
                created: true,
            })
        }
    }

    /// Cancels an active run whose slot a newer run of its key took, with
    /// the reason in its RUN_FINISHED; committed with the turn.
    fn cancel_superseded_run(&mut self, run_id: &str, reason: &str) {
        let Some(run) = self.runs.get_mut(run_id) else {
            return;
        };
        let mut actions = Vec::new();
        if run
            .cancel_with_reason(reason, now_unix_ms(), &mut actions)
            .is_ok()
        {
            self.apply_actions(run_id, actions);
        }
    }

    /// The admission of a run that was never stored is taken back: the
    /// runs it was to cancel keep their slots, and queued runs that now fit
    /// start at the next turn.
    fn withdraw(&mut self, scope: &KeyScope, run_id: &str, spared: &[String]) {
        for started in self.concurrency.withdraw(scope, run_id, spared) {
            self.pending_dequeues.push((scope.clone(), started));
        }
    }

    /// A run of `scope` ended or left the queue without starting: the
    /// queued runs that now fit are started at the next turn.
    pub(super) fn release(&mut self, scope: &KeyScope, run_id: &str) {
        for started in self.concurrency.finish(scope, run_id) {
            self.pending_dequeues.push((scope.clone(), started));
        }
    }

    /// A run in memory ended: its key's slot is free.
    pub(super) fn release_ended_run(&mut self, run_id: &str) {
        if let Some(scope) = self.concurrency.scope_of(run_id).cloned() {
            self.release(&scope, run_id);
        }
    }

    /// Starts the queued runs whose key made room for them: each is read
    /// back, built like a new run under its id, and committed as started
    /// only if it is still queued.
    pub(super) async fn start_dequeued_runs(&mut self) {
        for (scope, run_id) in std::mem::take(&mut self.pending_dequeues) {
            match self.start_dequeued_run(&scope, &run_id).await {
                Ok(true) => {}
                Ok(false) => self.release(&scope, &run_id),
                Err(error) => {
                    // It stays QUEUED in the database; the next start of the
                    // server finds it there and starts it.
                    tracing::error!(run_id, %error, "cannot start a queued run; it stays queued until the server restarts");
                    self.release(&scope, &run_id);
                }
            }
        }
    }

    async fn start_dequeued_run(
        &mut self,
        scope: &KeyScope,
        run_id: &str,
    ) -> Result<bool, DispatchError> {
        let (detail, _) = self.store.load_run(&scope.namespace, run_id).await?;
        if detail.run.status != RunStatus::Queued {
            return Ok(false);
        }
        let plan = self.recovered_plan(&detail.run).await?;
        let (run, mut new_run, actions) = RunState::start_dequeued(
            run_id.to_owned(),
            scope.namespace.clone(),
            plan,
            self.settings.run,
            &detail.run.input_context_json,
            detail.run.idempotency_key.clone(),
            detail.run.request_hash.clone(),
            now_unix_ms(),
        )?;
        new_run.concurrency_key = Some(scope.key.clone());
        match self.store.start_queued_run(&new_run).await? {
            Some(events) => {
                self.publish(events);
                self.activate_run(run, &new_run, actions);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Cancels a run that waits in its key's queue: its row becomes
    /// CANCELLED with a RUN_FINISHED, only if it is still queued.
    pub(super) async fn cancel_queued_run(
        &mut self,
        namespace: &str,
        run_id: &str,
        reply: oneshot::Sender<CancelOutcome>,
    ) {
        let Some(scope) = self
            .concurrency
            .scope_of(run_id)
            .filter(|scope| scope.namespace == namespace)
            .cloned()
        else {
            let _ = reply.send(CancelOutcome::NotActive);
            return;
        };
        let cancel = cancelled_queued_run(namespace, run_id, &scope.workflow_name, now_unix_ms());
        match self
            .store
            .cancel_queued_run(&cancel, cancel.created_at_ms)
            .await
        {
            Ok(Some(events)) => {
                self.publish(events);
                self.release(&scope, run_id);
                let _ = reply.send(CancelOutcome::Cancelled);
            }
            Ok(None) => {
                let _ = reply.send(CancelOutcome::NotActive);
            }
            Err(error) => {
                tracing::error!(run_id, %error, "cannot cancel a queued run");
                let _ = reply.send(CancelOutcome::NotActive);
            }
        }
    }

    /// Rebuilds every key from the stored runs after a restart: the active
    /// runs restored from `active` (oldest first) and the queued ones in
    /// queue order, each with the limit of its own version. Queued runs that
    /// fit (their key's runs ended while the server was down) start at the
    /// first turn.
    pub(super) async fn recover_keys(&mut self, active: &[RunRecord]) -> Result<(), StoreError> {
        let mut keys: BTreeMap<KeyScope, StoredKey> = BTreeMap::new();
        for run in active {
            if let Some(key) = &run.concurrency_key {
                keys.entry(scope_of(run, key))
                    .or_default()
                    .0
                    .push(run.id.clone());
            }
        }
        let queued = self.store.load_queued_runs().await?;
        let mut limits: BTreeMap<(String, String, String), u32> = BTreeMap::new();
        for run in &queued {
            let Some(key) = &run.concurrency_key else {
                continue;
            };
            let version = (
                run.namespace.clone(),
                run.workflow_name.clone(),
                run.workflow_version.clone(),
            );
            let limit = match limits.get(&version) {
                Some(limit) => *limit,
                None => {
                    let workflow = self
                        .store
                        .get_workflow(
                            &run.namespace,
                            &run.workflow_name,
                            &VersionSelector::Version(run.workflow_version.clone()),
                        )
                        .await?;
                    let limit = workflow
                        .spec
                        .concurrency
                        .map_or(1, |policy| policy.max_active_runs);
                    limits.insert(version, limit);
                    limit
                }
            };
            keys.entry(scope_of(run, key))
                .or_default()
                .1
                .push((run.id.clone(), limit));
        }
        let queued_count = queued.len();
        for (scope, (active, queued)) in keys {
            for started in self.concurrency.restore(&scope, active, queued) {
                self.pending_dequeues.push((scope.clone(), started));
            }
        }
        if queued_count > 0 {
            tracing::info!(
                runs = queued_count,
                starting = self.pending_dequeues.len(),
                "restored queued runs"
            );
        }
        Ok(())
    }
}

/// A key's runs as stored: the active ones (oldest first), and the queued
/// ones in order with each one's limit.
type StoredKey = (Vec<String>, Vec<(String, u32)>);

fn scope_of(run: &RunRecord, key: &str) -> KeyScope {
    KeyScope {
        namespace: run.namespace.clone(),
        workflow_name: run.workflow_name.clone(),
        key: key.to_owned(),
    }
}
