//! The cycle a definition is rejected with, found deterministically so that
//! every validator reports the same one.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::algo::{kosaraju_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::definition::TaskSpec;

/// Finds a cycle among tasks whose dependencies all exist, as a path in the
/// direction work flows (`a -> b` means `b` depends on `a`) that starts and
/// ends at the same task, e.g. `["a", "b", "c", "a"]`. Deterministic: the
/// cycle through the smallest task id of the lexicographically first strongly
/// connected component is reported, trying smaller ids first.
pub(crate) fn find_cycle(tasks: &[TaskSpec]) -> Option<Vec<String>> {
    let mut graph: DiGraph<&str, ()> = DiGraph::with_capacity(tasks.len(), 0);
    let index_of: BTreeMap<&str, NodeIndex> = tasks
        .iter()
        .map(|task| (task.id.as_str(), graph.add_node(task.id.as_str())))
        .collect();
    let mut dependants_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for task in tasks {
        for dependency in &task.dependencies {
            graph.add_edge(
                index_of[dependency.as_str()],
                index_of[task.id.as_str()],
                (),
            );
            dependants_of
                .entry(dependency.as_str())
                .or_default()
                .push(task.id.as_str());
        }
    }
    // Both algorithms are iterative: a 10,000-task chain must not overflow the
    // stack, which the recursive Tarjan implementation does.
    if toposort(&graph, None).is_ok() {
        return None;
    }
    let component = kosaraju_scc(&graph)
        .into_iter()
        .filter(|component| component.len() > 1)
        .map(|component| {
            let mut ids: Vec<&str> = component.iter().map(|&node| graph[node]).collect();
            ids.sort_unstable();
            ids
        })
        .min()?;
    let members: BTreeSet<&str> = component.iter().copied().collect();
    let start = component[0];
    let successors = |id: &str| -> Vec<&str> {
        let mut next: Vec<&str> = dependants_of
            .get(id)
            .map(|dependants| {
                dependants
                    .iter()
                    .copied()
                    .filter(|dependant| members.contains(dependant))
                    .collect()
            })
            .unwrap_or_default();
        next.sort_unstable();
        next
    };

    // Depth-first search within the component until an edge leads back to
    // the start; in a strongly connected component one always does.
    let mut path = vec![start];
    let mut visited = BTreeSet::from([start]);
    let mut next_choice = vec![0usize];
    while let Some(&current) = path.last() {
        let candidates = successors(current);
        if candidates.contains(&start) {
            let mut cycle: Vec<String> = path.iter().map(|id| (*id).to_owned()).collect();
            cycle.push(start.to_owned());
            return Some(cycle);
        }
        let choice = next_choice.last_mut()?;
        match candidates.get(*choice) {
            Some(&next) => {
                *choice += 1;
                if visited.insert(next) {
                    path.push(next);
                    next_choice.push(0);
                }
            }
            None => {
                path.pop();
                next_choice.pop();
            }
        }
    }
    None
}
