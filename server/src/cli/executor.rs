//! `tributary executor list`.

use std::process::ExitCode;

use serde_json::json;
use tributary_proto::v1 as pb;
use tributary_proto::v1::executor_service_client::ExecutorServiceClient;

use super::CliError;
use super::client::ClientOptions;
use super::output::{Align, Table, say};

#[derive(Debug, clap::Subcommand)]
pub enum ExecutorCommand {
    /// List the executors connected to the server.
    List {
        #[command(flatten)]
        client: ClientOptions,
    },
}

pub async fn executors(command: ExecutorCommand) -> Result<ExitCode, CliError> {
    let ExecutorCommand::List { client } = command;
    let mut executors = ExecutorServiceClient::new(client.namespaced_channel().await?);
    let listed = executors
        .list_executors(pb::ListExecutorsRequest {})
        .await?
        .into_inner()
        .executors;
    if client.json {
        let values: Vec<serde_json::Value> = listed
            .iter()
            .map(|executor| {
                json!({
                    "executor_id": executor.executor_id,
                    "name": executor.name,
                    "instance_id": executor.instance_id,
                    "handlers": executor.handlers,
                    "max_concurrent_attempts": executor.max_concurrent_attempts,
                    "in_flight_attempt_ids": executor.in_flight_attempt_ids,
                    "labels": executor.labels,
                })
            })
            .collect();
        say!("{}", serde_json::Value::Array(values));
        return Ok(ExitCode::SUCCESS);
    }
    if listed.is_empty() {
        say!("{}", super::waiting::no_executors_line(&client.namespace));
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&[
        ("EXECUTOR", Align::Left),
        ("NAME", Align::Left),
        ("IN FLIGHT", Align::Right),
        ("LABELS", Align::Left),
        ("HANDLERS", Align::Left),
    ]);
    for executor in &listed {
        table.row(vec![
            executor.executor_id.clone(),
            executor.name.clone(),
            format!(
                "{}/{}",
                executor.in_flight_attempt_ids.len(),
                executor.max_concurrent_attempts
            ),
            // The labels tasks are routed by, in key order.
            tributary_core::format_labels(&executor.labels.clone().into_iter().collect()),
            executor.handlers.join(", "),
        ]);
    }
    table.emit()?;
    Ok(ExitCode::SUCCESS)
}
