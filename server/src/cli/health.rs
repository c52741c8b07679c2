//! `tributary health`: asks a server's `grpc.health.v1.Health` service and
//! exits 0 only when it answers SERVING. The Docker HEALTHCHECK runs it
//! without `--server`, so it asks the address `TRIBUTARY_LISTEN` names.

use std::process::ExitCode;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::CliError;
use super::client::ClientOptions;
use super::output::say;

pub async fn run(options: &ClientOptions) -> Result<ExitCode, CliError> {
    let mut client = HealthClient::new(options.channel().await?);
    let response = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    let status = ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown);
    if options.json {
        say!("{}", serde_json::json!({ "status": status.as_str_name() }));
    } else {
        say!("{}", status.as_str_name());
    }
    Ok(if status == ServingStatus::Serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
