//! Mapped tasks at run time. A task with `map_over` is expanded when it
//! becomes READY: its input's array decides whether it fails (no array, too
//! long), succeeds at once (empty) or becomes one instance per element.
//!
//! An instance is a unit of the run like a task: it has a `TaskRuntime` at
//! an index past the plan's tasks (instances of one task are contiguous),
//! so assignment, fencing, retries, timeouts, losses and cancellation treat
//! it exactly as a task, with the mapped task's settings. What differs is
//! its input (the task's input without the array, plus its element), its
//! result (only the output key), and its end: it has no dependants, and the
//! last instance to end settles the mapped task, which gathers the outputs
//! in element order or fails naming the first failed instance.

use serde_json::value::RawValue;
use tributary_core::{MAP_ELEMENT_KEY, MAP_INDEX_KEY};

use super::*;
use crate::engine::context::kind_of;

/// A task settled by the engine itself: the state it ends in, its skip
/// reason and its error, as `settle_task` takes them.
pub(super) type Settlement = (TaskIndex, TaskState, Option<SkipReason>, Option<String>);

/// A mapped task once expanded.
#[derive(Debug, Clone)]
pub(super) struct Expansion {
    /// The unit of its first instance.
    first: TaskIndex,
    size: u32,
    /// Instances that have not ended yet.
    remaining: u32,
    /// Every instance's input before its element: the task's input
    /// without the array, shared (a persistent map) by all of them.
    base: Context,
    /// The array's elements, parsed once.
    elements: Vec<Arc<RawValue>>,
}

/// The instances of a run's mapped tasks.
#[derive(Debug, Clone, Default)]
pub(super) struct Maps {
    /// For each unit past the plan's tasks, in order: its mapped task and
    /// its element's index.
    instance_of: Vec<(TaskIndex, u32)>,
    expansions: HashMap<TaskIndex, Expansion>,
}

/// The storage key of instance `index` of task `task_id`: `fetch[3]`. No
/// task id contains `[`, so it never names a task.
pub fn instance_key(task_id: &str, index: u32) -> String {
    format!("{task_id}[{index}]")
}

/// The task id and index of an instance's storage key.
pub fn parse_instance_key(key: &str) -> Option<(&str, u32)> {
    let (task_id, rest) = key.split_once('[')?;
    let index = rest.strip_suffix(']')?.parse().ok()?;
    Some((task_id, index))
}

impl RunState {
    /// The mapped task and element index of an instance; `None` for a task.
    pub fn instance_of(&self, unit: TaskIndex) -> Option<(TaskIndex, u32)> {
        let offset = unit.checked_sub(self.plan.len())?;
        self.maps.instance_of.get(offset).copied()
    }

    /// The task whose settings a unit runs with: itself, or an instance's
    /// mapped task.
    pub(super) fn spec_task(&self, unit: TaskIndex) -> TaskIndex {
        self.instance_of(unit).map_or(unit, |(task, _)| task)
    }

    /// The id of the task a unit belongs to.
    pub fn task_id_of(&self, unit: TaskIndex) -> &str {
        &self.plan.tasks[self.spec_task(unit)].id
    }

    /// The handler a unit is routed by.
    pub fn handler_of(&self, unit: TaskIndex) -> &str {
        &self.plan.tasks[self.spec_task(unit)].handler
    }

    /// The task's limit of its handler's attempts in flight, for a unit.
    pub fn max_in_flight_of(&self, unit: TaskIndex) -> Option<u32> {
        self.plan.tasks[self.spec_task(unit)].max_in_flight
    }

    /// The labels an executor must have to take a unit, if any.
    pub fn required_labels_of(&self, unit: TaskIndex) -> Option<&Arc<tributary_core::Labels>> {
        self.plan.required_labels(self.spec_task(unit))
    }

    /// The element index of an instance; `None` for a task.
    pub fn map_index_of(&self, unit: TaskIndex) -> Option<u32> {
        self.instance_of(unit).map(|(_, index)| index)
    }

    /// Forgets a mapped task's instances, for a retry that resets it. Their
    /// units stay (all ended, since the run had), unreachable: the keys
    /// they were stored under now name the next expansion's instances.
    pub(super) fn drop_instances(&mut self, task: TaskIndex) {
        self.maps.expansions.remove(&task);
    }

    /// The units of a mapped task's instances (empty until it is
    /// expanded, and for a task that is not mapped).
    pub fn instances_of(&self, task: TaskIndex) -> std::ops::Range<TaskIndex> {
        self.maps.expansions.get(&task).map_or(0..0, |expansion| {
            expansion.first..expansion.first + expansion.size as usize
        })
    }

    /// How many instances a mapped task was expanded into, once it was.
    pub fn map_size_of(&self, task: TaskIndex) -> Option<u32> {
        self.maps
            .expansions
            .get(&task)
            .map(|expansion| expansion.size)
    }

    /// The key a unit's rows are stored under: a task's id, or an
    /// instance's `<task id>[<index>]`.
    pub(super) fn unit_key(&self, unit: TaskIndex) -> String {
        match self.instance_of(unit) {
            Some((task, index)) => instance_key(&self.plan.tasks[task].id, index),
            None => self.plan.tasks[unit].id.clone(),
        }
    }

    /// The unit stored under `key`, if this run has it.
    pub(super) fn unit_by_key(&self, key: &str) -> Option<TaskIndex> {
        if let Some(task) = self.plan.index_of(key) {
            return Some(task);
        }
        let (task_id, index) = parse_instance_key(key)?;
        let expansion = self.maps.expansions.get(&self.plan.index_of(task_id)?)?;
        (index < expansion.size).then(|| expansion.first + index as usize)
    }

    /// What a unit that became READY needs: a mapped task is expanded, the
    /// others queued.
    pub(super) fn ready_action(&self, unit: TaskIndex) -> Action {
        let mapped = unit < self.plan.len() && self.plan.tasks[unit].map.is_some();
        if mapped && !self.maps.expansions.contains_key(&unit) {
            Action::Expand(unit)
        } else {
            Action::Enqueue(unit)
        }
    }

    /// Expands a READY mapped task by the array in its input: it FAILS
    /// when the key is missing, holds no array or too many elements; it
    /// SUCCEEDS at once with an empty gathered array for an empty one;
    /// otherwise it is RUNNING with one READY instance per element.
    pub fn expand(&mut self, task: TaskIndex, now_ms: i64, actions: &mut Vec<Action>) {
        if self.status.is_terminal()
            || task >= self.plan.len()
            || self.tasks[task].state != TaskState::Ready
            || self.maps.expansions.contains_key(&task)
        {
            return;
        }
        let plan = self.plan.clone();
        let Some(map) = plan.tasks[task].map.as_ref() else {
            return;
        };
        let input = self.input_of(task);
        let elements = match elements_of(input.get(&map.over), &map.over, map.max_instances) {
            Ok(elements) => elements,
            Err(error) => {
                let details = EventDetails {
                    error: Some(error.clone()),
                    ..self.task_details(task)
                };
                self.event(EventType::TaskFailed, details, now_ms);
                self.finish_task(task, TaskState::Failed, Some(error), now_ms, actions);
                return;
            }
        };
        if elements.is_empty() {
            let settlement = self.succeed_gathered(task, now_ms);
            let (task, state, skip_reason, error) = settlement;
            self.settle_task(task, state, skip_reason, error, now_ms, actions);
            return;
        }
        let size = u32::try_from(elements.len()).unwrap_or(u32::MAX);
        let first = self.tasks.len();
        self.maps.expansions.insert(
            task,
            Expansion {
                first,
                size,
                remaining: size,
                base: input.without(&map.over),
                elements: elements.into_iter().map(Arc::from).collect(),
            },
        );
        self.tasks[task].state = TaskState::Running;
        self.touch(task, now_ms);
        let details = EventDetails {
            map_size: Some(size),
            ..self.task_details(task)
        };
        self.event(EventType::TaskMapped, details, now_ms);
        for index in 0..size {
            self.maps.instance_of.push((task, index));
            self.tasks
                .push(TaskRuntime::fresh(TaskState::Waiting, now_ms));
            self.outputs.push(None);
            self.deltas.push(None);
            self.succeeded_attempts.push(None);
        }
        for unit in first..self.tasks.len() {
            self.pending.new_units.insert(unit);
            self.make_ready(unit, now_ms, actions);
        }
    }

    /// An instance's input: the mapped task's input without the array,
    /// plus `map_element` and `map_index`, written by the mapped task (so
    /// they are sent by value: no attempt names them).
    pub(super) fn instance_input(&self, unit: TaskIndex) -> Option<Context> {
        let (task, index) = self.instance_of(unit)?;
        let expansion = self.maps.expansions.get(&task)?;
        let element = expansion.elements.get(index as usize)?.clone();
        let mut input = expansion.base.clone();
        input.put(Arc::from(MAP_ELEMENT_KEY), Some(task), element);
        let position = RawValue::from_string(index.to_string()).ok()?;
        input.put(Arc::from(MAP_INDEX_KEY), Some(task), Arc::from(position));
        Some(input)
    }

    /// Why an instance's result is refused: it may set only the output key.
    pub(super) fn instance_delta_error(&self, unit: TaskIndex, delta: &Delta) -> Option<String> {
        let (task, index) = self.instance_of(unit)?;
        let spec = &self.plan.tasks[task];
        let output = &spec.map.as_ref()?.output;
        let written = delta
            .set
            .iter()
            .map(|(key, _)| key)
            .find(|key| &***key != output.as_str())
            .or(delta.removed.first())?;
        Some(format!(
            "map instance {index} of task {:?} wrote key {:?}; an instance may only set {output:?}",
            spec.id, &**written
        ))
    }

    /// An instance succeeded: its delta is kept for the gathering (it is
    /// not part of the run's context), and it ends.
    pub(super) fn instance_succeeded(
        &mut self,
        unit: TaskIndex,
        attempt_id: &str,
        delta: Delta,
        now_ms: i64,
        actions: &mut Vec<Action>,
    ) {
        self.update_attempt(attempt_id, |attempt| {
            attempt.state = AttemptState::Succeeded;
            attempt.finished_at_ms = Some(now_ms);
        });
        let details = self.attempt_details(unit, attempt_id);
        self.tasks[unit].current = None;
        self.tasks[unit].error = None;
        self.pending.deltas.push(DeltaRecord {
            task_id: self.unit_key(unit),
            attempt_id: attempt_id.to_owned(),
            set_json: delta.set_json(),
            removed_keys: Vec::new(),
        });
        self.deltas[unit] = Some(delta);
        self.succeeded_attempts[unit] = Some(Arc::from(attempt_id));
        self.event(EventType::TaskSucceeded, details, now_ms);
        self.finish_task(unit, TaskState::Succeeded, None, now_ms, actions);
    }

    /// An instance ended (its state is set): when it was the last, its
    /// mapped task's settlement.
    pub(super) fn instance_ended(&mut self, unit: TaskIndex, now_ms: i64) -> Option<Settlement> {
        let (task, _) = self.instance_of(unit)?;
        let expansion = self.maps.expansions.get_mut(&task)?;
        expansion.remaining = expansion.remaining.saturating_sub(1);
        if expansion.remaining > 0 {
            return None;
        }
        let (first, size) = (expansion.first, expansion.size);
        let failed: Vec<TaskIndex> = (first..first + size as usize)
            .filter(|&unit| self.tasks[unit].state != TaskState::Succeeded)
            .collect();
        let Some(&first_failed) = failed.first() else {
            return Some(self.succeed_gathered(task, now_ms));
        };
        let error = format!(
            "{} of {size} map instances failed; the first, instance {}: {}",
            failed.len(),
            first_failed - first,
            self.tasks[first_failed]
                .error
                .as_deref()
                .unwrap_or("failed")
        );
        let details = EventDetails {
            error: Some(error.clone()),
            ..self.task_details(task)
        };
        self.event(EventType::TaskFailed, details, now_ms);
        Some((task, TaskState::Failed, None, Some(error)))
    }

    /// Records a mapped task's gathered output as its delta, as a succeeded
    /// attempt's would be (size limit, conflicts, output); its settlement,
    /// FAILED when the output takes the run's context over the limit.
    fn succeed_gathered(&mut self, task: TaskIndex, now_ms: i64) -> Settlement {
        let delta = self.gathered(task);
        let limit = self.settings.max_run_context_bytes;
        let would_be = self.context_size.with_delta(task, &delta);
        if would_be > limit {
            let error = format!(
                "context of run {} would be {would_be} bytes with the gathered outputs, above the limit of {limit} bytes (max_run_context_bytes) by {}",
                self.id,
                would_be - limit
            );
            let details = EventDetails {
                error: Some(error.clone()),
                ..self.task_details(task)
            };
            self.event(EventType::TaskFailed, details, now_ms);
            return (task, TaskState::Failed, None, Some(error));
        }
        self.context_size.apply(task, &delta);
        self.tasks[task].error = None;
        self.pending.deltas.push(DeltaRecord {
            task_id: self.plan.tasks[task].id.clone(),
            attempt_id: String::new(),
            set_json: delta.set_json(),
            removed_keys: Vec::new(),
        });
        self.record_conflicts(task, &delta, now_ms);
        let mut output = self.input_of(task);
        output.apply(task, &delta);
        self.outputs[task] = Some(output);
        self.deltas[task] = Some(delta);
        self.event(EventType::TaskSucceeded, self.task_details(task), now_ms);
        (task, TaskState::Succeeded, None, None)
    }

    /// Puts back the instances of the mapped tasks a stored run had
    /// expanded (their rows say how many), with their deltas. Called once
    /// every terminal task's output is rebuilt, since an instance's input
    /// comes from its mapped task's.
    pub(super) fn restore_instances(&mut self, detail: &RunDetail) -> Result<(), RestoreError> {
        let executors = super::restore::executors_of_attempts(detail);
        let rows: HashMap<&str, &TaskRecord> = detail
            .tasks
            .iter()
            .filter(|row| row.map_index.is_some())
            .map(|row| (row.task_id.as_str(), row))
            .collect();
        let sizes: Vec<(TaskIndex, u32)> = detail
            .tasks
            .iter()
            .filter_map(|row| Some((self.plan.index_of(&row.task_id)?, row.map_size?)))
            .collect();
        let mut expanded: Vec<(TaskIndex, u32)> = sizes;
        expanded.sort_unstable();
        for (task, size) in expanded {
            let Some(map) = self.plan.tasks[task].map.clone() else {
                return Err(RestoreError::UnknownTask(instance_key(
                    &self.plan.tasks[task].id,
                    0,
                )));
            };
            let input = self.input_of(task);
            let elements = elements_of(input.get(&map.over), &map.over, u32::MAX)
                .map_err(|_| RestoreError::MissingTask(self.plan.tasks[task].id.clone()))?;
            let first = self.tasks.len();
            let mut remaining = 0;
            for index in 0..size {
                let key = instance_key(&self.plan.tasks[task].id, index);
                let row = rows
                    .get(key.as_str())
                    .ok_or_else(|| RestoreError::MissingTask(key.clone()))?;
                let runtime = super::restore::runtime_of(row, &executors);
                remaining += u32::from(!runtime.state.is_terminal());
                self.maps.instance_of.push((task, index));
                self.tasks.push(runtime);
                self.outputs.push(None);
                self.deltas.push(None);
                self.succeeded_attempts.push(None);
            }
            self.maps.expansions.insert(
                task,
                Expansion {
                    first,
                    size,
                    remaining,
                    base: input.without(&map.over),
                    elements: elements.into_iter().map(Arc::from).collect(),
                },
            );
        }
        for record in &detail.deltas {
            if parse_instance_key(&record.task_id).is_none() {
                continue;
            }
            let unit = self
                .unit_by_key(&record.task_id)
                .ok_or_else(|| RestoreError::UnknownTask(record.task_id.clone()))?;
            self.deltas[unit] = Some(Delta::parse(&record.set_json, &record.removed_keys)?);
            self.succeeded_attempts[unit] = Some(Arc::from(record.attempt_id.as_str()));
        }
        if rows.len() != self.maps.instance_of.len() {
            let known: std::collections::HashSet<String> = (self.plan.len()..self.tasks.len())
                .map(|unit| self.unit_key(unit))
                .collect();
            if let Some(stray) = rows.keys().find(|key| !known.contains(**key)) {
                return Err(RestoreError::UnknownTask((*stray).to_owned()));
            }
        }
        Ok(())
    }

    /// The delta of a mapped task: its output key set to the array of its
    /// instances' values at that key, in element order, `null` for an
    /// instance that set none. Values are copied as the raw JSON text the
    /// instances wrote.
    fn gathered(&self, task: TaskIndex) -> Delta {
        let output = self.plan.tasks[task].map.as_ref().map_or_else(
            || self.plan.tasks[task].id.clone(),
            |map| map.output.clone(),
        );
        let mut array = String::from("[");
        if let Some(expansion) = self.maps.expansions.get(&task) {
            let first = expansion.first;
            for unit in first..first + expansion.size as usize {
                if unit > first {
                    array.push(',');
                }
                let value = self.deltas[unit].as_ref().and_then(|delta| {
                    delta
                        .set
                        .iter()
                        .find(|(key, _)| **key == *output)
                        .map(|(_, value)| value.get())
                });
                array.push_str(value.unwrap_or("null"));
            }
        }
        array.push(']');
        // Raw JSON texts joined by commas in brackets are a JSON array.
        let value = RawValue::from_string(array)
            .unwrap_or_else(|_| RawValue::from_string("[]".to_owned()).unwrap_or_default());
        Delta {
            set: vec![(Arc::from(output.as_str()), Arc::from(value))],
            removed: Vec::new(),
        }
    }
}

/// The elements of the value at a mapped task's `map_over` key, as raw JSON
/// texts, or why there are none to map over.
fn elements_of(
    value: Option<&RawValue>,
    key: &str,
    max_instances: u32,
) -> Result<Vec<Box<RawValue>>, String> {
    let Some(value) = value else {
        return Err(format!("map_over key {key:?} is not in the task's input"));
    };
    let text = value.get().trim_start();
    if !text.starts_with('[') {
        let kind = if text.starts_with('{') {
            "an object"
        } else {
            kind_of(text)
        };
        return Err(format!("map_over key {key:?} holds {kind}, not an array"));
    }
    let elements: Vec<Box<RawValue>> = serde_json::from_str(value.get())
        .map_err(|error| format!("map_over key {key:?} holds an invalid array: {error}"))?;
    if elements.len() > max_instances as usize {
        return Err(format!(
            "map_over key {key:?} holds {} elements, over the limit of {max_instances} (map_max_instances)",
            elements.len()
        ));
    }
    Ok(elements)
}

#[cfg(test)]
#[path = "map_tests.rs"]
mod tests;
