//! `tributary workflow register|get|list`.

use std::path::{Path, PathBuf};

use serde_json::json;
use tributary_core::WorkflowDefinition;
use tributary_proto::v1 as pb;
use tributary_proto::v1::workflow_service_client::WorkflowServiceClient;

use super::CliError;
use super::client::ClientOptions;

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
        println!("{value}");
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
        println!(
            "registered workflow {name} version {} (sequence {}, {what})",
            workflow.version, workflow.sequence
        );
    }
    Ok(())
}

async fn get(
    name: String,
    version: Option<String>,
    options: &ClientOptions,
) -> Result<(), CliError> {
    let selector = version.map(|version| {
        let is_hash = version.len() == 16 && version.chars().all(|c| c.is_ascii_hexdigit());
        match version.parse::<u64>() {
            Ok(sequence) if !is_hash => pb::get_workflow_request::Selector::Sequence(sequence),
            _ => pb::get_workflow_request::Selector::Version(version),
        }
    });
    let mut client = WorkflowServiceClient::new(options.namespaced_channel().await?);
    let workflow = client
        .get_workflow(pb::GetWorkflowRequest { name, selector })
        .await?
        .into_inner()
        .workflow
        .unwrap_or_default();
    if options.json {
        println!("{}", workflow_json(&workflow));
        return Ok(());
    }
    let definition = workflow.definition.clone().unwrap_or_default();
    println!("workflow:    {}", definition.name);
    println!(
        "version:     {} (sequence {}{})",
        workflow.version,
        workflow.sequence,
        if workflow.latest { ", latest" } else { "" }
    );
    if !definition.description.is_empty() {
        println!("description: {}", definition.description);
    }
    println!();
    println!(
        "{:<24} {:<8} {:<14} {:<12} {:<32} DEPENDENCIES",
        "TASK", "RETRIES", "BACKOFF", "TRIGGER", "HANDLER"
    );
    for task in &definition.tasks {
        println!(
            "{:<24} {:<8} {:<14} {:<12} {:<32} {}",
            task.id,
            task.retry_attempts.unwrap_or_default(),
            task.retry_backoff,
            task.trigger_rule,
            task.handler,
            task.dependencies.join(", ")
        );
    }
    Ok(())
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
        println!("{}", serde_json::Value::Array(values));
        return Ok(());
    }
    println!(
        "{:<32} {:<18} {:>8} {:>6}",
        "NAME", "VERSION", "SEQUENCE", "TASKS"
    );
    for workflow in &workflows {
        let definition = workflow.definition.clone().unwrap_or_default();
        println!(
            "{:<32} {:<18} {:>8} {:>6}",
            definition.name,
            workflow.version,
            workflow.sequence,
            definition.tasks.len()
        );
    }
    Ok(())
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
