//! `tributary workflow register|get|list`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::json;
use tributary_core::WorkflowDefinition;
use tributary_proto::v1 as pb;
use tributary_proto::v1::workflow_service_client::WorkflowServiceClient;

use super::CliError;
use super::client::ClientOptions;
use super::output::{Align, Table, say};

pub use pb::get_workflow_request::Selector;

#[derive(Debug, clap::Subcommand)]
pub enum WorkflowCommand {
    /// Register a definition file (JSON, or YAML when named *.yaml / *.yml).
    Register {
        /// The definition file; `-` reads JSON from standard input.
        file: PathBuf,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Show a workflow: its latest version, or the one given.
    Get {
        name: String,
        /// A version hash, or a sequence number (1 = first registered).
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// List the namespace's workflows with their latest versions.
    List {
        #[command(flatten)]
        client: ClientOptions,
    },
}

pub async fn run(command: WorkflowCommand) -> Result<(), CliError> {
    match command {
        WorkflowCommand::Register { file, client } => register(&file, &client).await,
        WorkflowCommand::Get {
            name,
            version,
            client,
        } => get(name, version, &client).await,
        WorkflowCommand::List { client } => list(&client).await,
    }
}

/// Reads a definition file in the `TaskDefinition` field names. Unknown
/// fields are errors: a typo must not silently become a default.
pub fn read_definition_file(path: &Path) -> Result<WorkflowDefinition, CliError> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|error| CliError::Input(format!("cannot read {}: {error}", path.display())))?;
    let is_yaml = matches!(
        path.extension().and_then(|extension| extension.to_str()),
        Some("yaml" | "yml")
    );
    if is_yaml {
        serde_yaml::from_str(&text)
            .map_err(|error| CliError::Input(format!("{}: {error}", path.display())))
    } else {
        serde_json::from_str(&text)
            .map_err(|error| CliError::Input(format!("{}: {error}", path.display())))
    }
}

async fn register(file: &Path, options: &ClientOptions) -> Result<(), CliError> {
    let input = read_definition_file(file)?;
    let mut client = WorkflowServiceClient::new(options.namespaced_channel().await?);
    let response = client
        .register_workflow(pb::RegisterWorkflowRequest {
            definition: Some(pb::WorkflowDefinition::from(&input)),
        })
        .await?
        .into_inner();
    let workflow = response.workflow.unwrap_or_default();
    if options.json {
        let mut value = workflow_json(&workflow);
        value["created"] = json!(response.created);
        say!("{value}");
    } else {
        let name = workflow
            .definition
            .as_ref()
            .map(|d| d.name.as_str())
            .unwrap_or("");
        let what = if response.created {
            "new version"
        } else {
            "already registered; now the latest"
        };
        say!(
            "registered workflow {name} version {} (sequence {}, {what})",
            workflow.version,
            workflow.sequence
        );
    }
    Ok(())
}

async fn get(
    name: String,
    version: Option<String>,
    options: &ClientOptions,
) -> Result<(), CliError> {
    let selector = version.as_deref().map(version_selector);
    let mut client = WorkflowServiceClient::new(options.namespaced_channel().await?);
    let workflow = client
        .get_workflow(pb::GetWorkflowRequest { name, selector })
        .await?
        .into_inner()
        .workflow
        .unwrap_or_default();
    if options.json {
        say!("{}", workflow_json(&workflow));
        return Ok(());
    }
    let definition = workflow.definition.clone().unwrap_or_default();
    say!("workflow:    {}", definition.name);
    say!(
        "version:     {} (sequence {}{})",
        workflow.version,
        workflow.sequence,
        if workflow.latest { ", latest" } else { "" }
    );
    if let Some(created) = workflow.created_at.as_ref() {
        say!(
            "registered:  {}",
            super::output::time(tributary_proto::unix_ms_from_timestamp(created))
        );
    }
    if !definition.description.is_empty() {
        say!("description: {}", definition.description);
    }
    if let Some(policy) = &definition.concurrency {
        say!("concurrency: {}", concurrency_text(policy));
    }
    say!("");
    // The labels and limit columns only when some task sets them, so that
    // the common table stays as narrow as it was.
    let labeled = definition
        .tasks
        .iter()
        .any(|task| !task.required_labels.is_empty());
    let limited = definition
        .tasks
        .iter()
        .any(|task| task.max_in_flight.is_some());
    let mut columns = vec![
        ("TASK", Align::Left),
        ("RETRIES", Align::Right),
        ("BACKOFF", Align::Left),
        ("TRIGGER", Align::Left),
        ("HANDLER", Align::Left),
    ];
    if labeled {
        columns.push(("REQUIRED LABELS", Align::Left));
    }
    if limited {
        columns.push(("MAX IN FLIGHT", Align::Right));
    }
    // Likewise the map column only when some task is mapped.
    let mapped = definition
        .tasks
        .iter()
        .any(|task| !task.map_over.is_empty());
    if mapped {
        columns.push(("MAP", Align::Left));
    }
    columns.push(("DEPENDENCIES", Align::Left));
    let mut table = Table::new(&columns);
    for task in dependency_order(&definition.tasks) {
        let mut row = vec![
            task.id.clone(),
            task.retry_attempts.unwrap_or_default().to_string(),
            task.retry_backoff.clone(),
            task.trigger_rule.clone(),
            task.handler.clone(),
        ];
        if labeled {
            row.push(required_labels_text(task));
        }
        if limited {
            row.push(
                task.max_in_flight
                    .map(|limit| limit.to_string())
                    .unwrap_or_default(),
            );
        }
        if mapped {
            row.push(map_text(task));
        }
        row.push(task.dependencies.join(", "));
        table.row(row);
    }
    table.emit()
}

/// A concurrency policy in one line: the limit, the key and the strategy.
fn concurrency_text(policy: &pb::ConcurrencyPolicy) -> String {
    let key = if policy.key_pointer.is_empty() {
        format!("the fixed key {:?}", policy.fixed_key)
    } else {
        format!("key {} of the input", policy.key_pointer)
    };
    let limit = policy.max_active_runs.unwrap_or(1);
    let strategy = if policy.strategy.is_empty() {
        "queue"
    } else {
        policy.strategy.as_str()
    };
    let runs = if limit == 1 { "run" } else { "runs" };
    format!("at most {limit} active {runs} per {key}; beyond that: {strategy}")
}

/// A mapped task's map in one cell: the array's key, the output key and
/// the limit; empty for a task that is not mapped.
fn map_text(task: &pb::TaskDefinition) -> String {
    if task.map_over.is_empty() {
        return String::new();
    }
    format!(
        "{} -> {} (at most {})",
        task.map_over,
        task.map_output,
        task.map_max_instances
            .unwrap_or(tributary_core::DEFAULT_MAP_MAX_INSTANCES as i32)
    )
}

/// A task's required labels as `key=value` pairs in key order.
fn required_labels_text(task: &pb::TaskDefinition) -> String {
    let labels: tributary_core::Labels = task
        .required_labels
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    tributary_core::format_labels(&labels)
}

async fn list(options: &ClientOptions) -> Result<(), CliError> {
    let mut client = WorkflowServiceClient::new(options.namespaced_channel().await?);
    let mut workflows = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_workflows(pb::ListWorkflowsRequest {
                page_size: 1000,
                page_token,
            })
            .await?
            .into_inner();
        workflows.extend(page.workflows);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if options.json {
        let values: Vec<_> = workflows.iter().map(workflow_json).collect();
        say!("{}", serde_json::Value::Array(values));
        return Ok(());
    }
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("VERSION", Align::Left),
        ("SEQUENCE", Align::Right),
        ("TASKS", Align::Right),
    ]);
    for workflow in &workflows {
        let definition = workflow.definition.clone().unwrap_or_default();
        table.row(vec![
            definition.name,
            workflow.version.clone(),
            workflow.sequence.to_string(),
            definition.tasks.len().to_string(),
        ]);
    }
    table.emit()
}

/// What `--version` names: a 16-digit version hash, or a sequence number
/// (1 = first registered); `workflow get` and `run start` read it alike.
pub fn version_selector(version: &str) -> Selector {
    let is_hash = version.len() == 16 && version.chars().all(|c| c.is_ascii_hexdigit());
    match version.parse::<u64>() {
        Ok(sequence) if !is_hash => Selector::Sequence(sequence),
        _ => Selector::Version(version.to_owned()),
    }
}

/// The tasks in dependency order: each after its dependencies, ties by id
/// (the canonical order the server numbers tasks in). Dependencies on ids
/// the list does not have are ignored; tasks left in a cycle come last.
pub fn dependency_order(tasks: &[pb::TaskDefinition]) -> Vec<&pb::TaskDefinition> {
    let by_id: BTreeMap<&str, &pb::TaskDefinition> =
        tasks.iter().map(|task| (task.id.as_str(), task)).collect();
    let mut pending: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dependants: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for task in tasks {
        let known: BTreeSet<&str> = task
            .dependencies
            .iter()
            .map(String::as_str)
            .filter(|dependency| by_id.contains_key(dependency))
            .collect();
        pending.insert(task.id.as_str(), known.len());
        for dependency in known {
            dependants
                .entry(dependency)
                .or_default()
                .push(task.id.as_str());
        }
    }
    let mut ready: BTreeSet<&str> = pending
        .iter()
        .filter(|(_, count)| **count == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut ordered = Vec::with_capacity(tasks.len());
    while let Some(id) = ready.pop_first() {
        ordered.push(by_id[id]);
        for dependant in dependants.get(id).into_iter().flatten() {
            if let Some(count) = pending.get_mut(dependant) {
                *count -= 1;
                if *count == 0 {
                    ready.insert(dependant);
                }
            }
        }
    }
    for (id, task) in &by_id {
        if pending.get(id).is_some_and(|count| *count > 0) {
            ordered.push(task);
        }
    }
    ordered
}

/// A workflow as JSON, its definition in the definition-file format.
fn workflow_json(workflow: &pb::Workflow) -> serde_json::Value {
    let definition = WorkflowDefinition::from(workflow.definition.clone().unwrap_or_default());
    json!({
        "name": definition.name,
        "version": workflow.version,
        "sequence": workflow.sequence,
        "latest": workflow.latest,
        "created_at_ms": workflow.created_at.as_ref().map(tributary_proto::unix_ms_from_timestamp),
        "definition": definition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, dependencies: &[&str]) -> pb::TaskDefinition {
        pb::TaskDefinition {
            id: id.to_owned(),
            dependencies: dependencies.iter().map(|d| (*d).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn concurrency_policies_in_one_line() {
        let pointer = pb::ConcurrencyPolicy {
            key_pointer: "/customer".into(),
            max_active_runs: Some(2),
            strategy: "cancel_newest".into(),
            ..Default::default()
        };
        assert_eq!(
            concurrency_text(&pointer),
            "at most 2 active runs per key /customer of the input; beyond that: cancel_newest"
        );
        let fixed = pb::ConcurrencyPolicy {
            fixed_key: "all".into(),
            ..Default::default()
        };
        assert_eq!(
            concurrency_text(&fixed),
            "at most 1 active run per the fixed key \"all\"; beyond that: queue"
        );
    }

    #[test]
    fn required_labels_are_listed_in_key_order() {
        let mut gpu = task("train", &[]);
        gpu.required_labels = [
            ("region".to_owned(), "eu".to_owned()),
            ("gpu".to_owned(), "true".to_owned()),
        ]
        .into();
        assert_eq!(required_labels_text(&gpu), "gpu=true, region=eu");
        assert_eq!(required_labels_text(&task("plain", &[])), "");
    }

    #[test]
    fn maps_show_their_keys_and_limit() {
        let mut fetch = task("fetch", &[]);
        fetch.map_over = "urls".into();
        fetch.map_output = "pages".into();
        fetch.map_max_instances = Some(500);
        assert_eq!(map_text(&fetch), "urls -> pages (at most 500)");
        assert_eq!(map_text(&task("plain", &[])), "");
    }

    #[test]
    fn tasks_come_in_dependency_order_ties_by_id() {
        let tasks = [
            task("cleanup", &["report", "notify"]),
            task("combine", &["p1", "p2"]),
            task("generate", &[]),
            task("notify", &["combine"]),
            task("p1", &["generate"]),
            task("p2", &["generate"]),
            task("report", &["combine"]),
        ];
        let ids: Vec<&str> = dependency_order(&tasks)
            .iter()
            .map(|task| task.id.as_str())
            .collect();
        assert_eq!(
            ids,
            [
                "generate", "p1", "p2", "combine", "notify", "report", "cleanup"
            ]
        );
    }

    #[test]
    fn versions_are_hashes_or_sequence_numbers() {
        assert_eq!(version_selector("3"), Selector::Sequence(3));
        assert_eq!(
            version_selector("0123456789abcdef"),
            Selector::Version("0123456789abcdef".into())
        );
        assert_eq!(
            version_selector("1234567890123456"),
            Selector::Version("1234567890123456".into())
        );
    }
}
