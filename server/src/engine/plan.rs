//! A workflow version prepared for execution: tasks numbered in canonical
//! order (topological, ties broken by task id byte-wise), with dependency and
//! dependant lists as indexes. A task's index is its canonical position, so
//! "later in canonical order" is simply a larger index.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use tributary_core::{Labels, TaskSpec, WorkflowSpec};

/// Index of a task in its plan's canonical order.
pub type TaskIndex = usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowPlan {
    pub workflow_name: String,
    pub version: String,
    /// Tasks in canonical order.
    pub tasks: Vec<TaskSpec>,
    pub dependencies: Vec<Vec<TaskIndex>>,
    pub dependants: Vec<Vec<TaskIndex>>,
    /// Each task's required labels, shared by all its ready entries so
    /// that queueing one never copies them; `None` for a task without.
    required_labels: Vec<Option<Arc<Labels>>>,
    index_by_id: BTreeMap<String, TaskIndex>,
}

impl WorkflowPlan {
    /// Builds the plan of a validated spec (which is acyclic with known
    /// dependencies; anything else is a bug in validation).
    pub fn new(spec: &WorkflowSpec, version: &str) -> WorkflowPlan {
        let position_in_spec: BTreeMap<&str, usize> = spec
            .tasks
            .iter()
            .enumerate()
            .map(|(index, task)| (task.id.as_str(), index))
            .collect();
        let mut remaining_dependencies: Vec<usize> = spec
            .tasks
            .iter()
            .map(|task| task.dependencies.len())
            .collect();
        let mut spec_dependants: Vec<Vec<usize>> = vec![Vec::new(); spec.tasks.len()];
        for (index, task) in spec.tasks.iter().enumerate() {
            for dependency in &task.dependencies {
                if let Some(&dependency_index) = position_in_spec.get(dependency.as_str()) {
                    spec_dependants[dependency_index].push(index);
                }
            }
        }
        // Kahn's algorithm with a min-heap on the id gives the canonical
        // order: among tasks whose dependencies are all placed, the smallest
        // id goes first.
        let mut ready: BinaryHeap<Reverse<(&str, usize)>> = spec
            .tasks
            .iter()
            .enumerate()
            .filter(|(index, _)| remaining_dependencies[*index] == 0)
            .map(|(index, task)| Reverse((task.id.as_str(), index)))
            .collect();
        let mut order = Vec::with_capacity(spec.tasks.len());
        while let Some(Reverse((_, index))) = ready.pop() {
            order.push(index);
            for &dependant in &spec_dependants[index] {
                remaining_dependencies[dependant] -= 1;
                if remaining_dependencies[dependant] == 0 {
                    ready.push(Reverse((spec.tasks[dependant].id.as_str(), dependant)));
                }
            }
        }
        let tasks: Vec<TaskSpec> = order
            .iter()
            .map(|&index| spec.tasks[index].clone())
            .collect();
        let index_by_id: BTreeMap<String, TaskIndex> = tasks
            .iter()
            .enumerate()
            .map(|(index, task)| (task.id.clone(), index))
            .collect();
        let dependencies: Vec<Vec<TaskIndex>> = tasks
            .iter()
            .map(|task| {
                let mut indexes: Vec<TaskIndex> = task
                    .dependencies
                    .iter()
                    .filter_map(|id| index_by_id.get(id).copied())
                    .collect();
                indexes.sort_unstable();
                indexes
            })
            .collect();
        let mut dependants: Vec<Vec<TaskIndex>> = vec![Vec::new(); tasks.len()];
        for (index, task_dependencies) in dependencies.iter().enumerate() {
            for &dependency in task_dependencies {
                dependants[dependency].push(index);
            }
        }
        let required_labels = tasks
            .iter()
            .map(|task| {
                (!task.required_labels.is_empty()).then(|| Arc::new(task.required_labels.clone()))
            })
            .collect();
        WorkflowPlan {
            workflow_name: spec.name.clone(),
            version: version.to_owned(),
            required_labels,
            tasks,
            dependencies,
            dependants,
            index_by_id,
        }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The labels an executor must have to take `task`, if any.
    pub fn required_labels(&self, task: TaskIndex) -> Option<&Arc<Labels>> {
        self.required_labels.get(task)?.as_ref()
    }

    pub fn index_of(&self, task_id: &str) -> Option<TaskIndex> {
        self.index_by_id.get(task_id).copied()
    }

    /// Whether `ancestor` is reachable from `task` by following
    /// dependencies. Walks only the tasks before `task` in canonical order.
    pub fn is_ancestor(&self, ancestor: TaskIndex, task: TaskIndex) -> bool {
        if ancestor >= task {
            return false;
        }
        let mut visited = vec![false; task + 1];
        let mut stack = vec![task];
        while let Some(current) = stack.pop() {
            for &dependency in &self.dependencies[current] {
                if dependency == ancestor {
                    return true;
                }
                // An ancestor always precedes its dependants, so anything
                // before `ancestor` cannot lead to it.
                if dependency > ancestor && !visited[dependency] {
                    visited[dependency] = true;
                    stack.push(dependency);
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_core::{DefinitionLimits, TaskDefinition, WorkflowDefinition, validate};

    pub(crate) fn plan_of(tasks: &[(&str, &[&str])]) -> WorkflowPlan {
        let input = WorkflowDefinition {
            name: "wf".into(),
            description: String::new(),
            tasks: tasks
                .iter()
                .map(|(id, dependencies)| TaskDefinition {
                    id: (*id).into(),
                    dependencies: dependencies.iter().map(|d| (*d).into()).collect(),
                    ..TaskDefinition::default()
                })
                .collect(),
            concurrency: None,
        };
        let spec = validate(&input, 0, DefinitionLimits::default()).expect("valid");
        WorkflowPlan::new(&spec, &spec.version())
    }

    fn ids(plan: &WorkflowPlan) -> Vec<&str> {
        plan.tasks.iter().map(|task| task.id.as_str()).collect()
    }

    #[test]
    fn canonical_order_is_topological_with_ties_by_id() {
        let plan = plan_of(&[
            ("z_root", &[]),
            ("a_child", &["z_root"]),
            ("m_root", &[]),
            ("b_child", &["m_root", "z_root"]),
        ]);
        assert_eq!(ids(&plan), ["m_root", "z_root", "a_child", "b_child"]);
        assert_eq!(plan.dependencies[3], [0, 1]);
        assert_eq!(plan.dependants[1], [2, 3]);
    }

    #[test]
    fn ties_are_broken_byte_wise() {
        let plan = plan_of(&[("b", &[]), ("a_2", &[]), ("a-1", &[]), ("a10", &[])]);
        // '-' (0x2d) < '1' (0x31) < '_' (0x5f)
        assert_eq!(ids(&plan), ["a-1", "a10", "a_2", "b"]);
    }

    #[test]
    fn seed_shape_order() {
        let plan = plan_of(&[
            ("generate_data", &[]),
            ("partition_data", &["generate_data"]),
            ("process_partition_1", &["partition_data"]),
            ("process_partition_2", &["partition_data"]),
            ("process_partition_3", &["partition_data"]),
            (
                "combine_results",
                &[
                    "process_partition_1",
                    "process_partition_2",
                    "process_partition_3",
                ],
            ),
            ("generate_report", &["combine_results"]),
            ("send_notifications", &["combine_results"]),
            ("cleanup", &["generate_report", "send_notifications"]),
        ]);
        assert_eq!(
            ids(&plan),
            [
                "generate_data",
                "partition_data",
                "process_partition_1",
                "process_partition_2",
                "process_partition_3",
                "combine_results",
                "generate_report",
                "send_notifications",
                "cleanup"
            ]
        );
    }

    #[test]
    fn ancestry() {
        let plan = plan_of(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b"])]);
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|id| plan.index_of(id).expect("known"));
        assert!(plan.is_ancestor(a, d));
        assert!(plan.is_ancestor(b, d));
        assert!(!plan.is_ancestor(c, d));
        assert!(!plan.is_ancestor(d, a));
        assert!(!plan.is_ancestor(b, c));
        assert!(!plan.is_ancestor(a, a));
    }
}
