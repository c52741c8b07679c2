//! `tributary key create|list|revoke`: API keys, through `KeyService` (an
//! admin key is needed once keys are on).

use std::process::ExitCode;

use serde_json::json;
use tributary_proto::v1 as pb;
use tributary_proto::v1::key_service_client::KeyServiceClient;
use tributary_proto::{timestamp_from_unix_ms, unix_ms_from_timestamp};

use super::CliError;
use super::client::ClientOptions;

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Create a key for --namespace (`*`: an admin key of every namespace)
    /// and print its secret, which is shown only this once.
    Create {
        /// admin, client, executor or viewer.
        #[arg(long)]
        role: String,
        /// Free text for people, e.g. who holds the key.
        #[arg(long, default_value = "")]
        label: String,
        /// How long the key works: a number with s, m, h or d (`90d`);
        /// forever when omitted.
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// List the keys this key manages (never their secrets).
    List {
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Revoke a key: its calls fail at once and its open streams end.
    Revoke {
        key_id: String,
        #[command(flatten)]
        client: ClientOptions,
    },
}

/// Milliseconds in a duration like `90d`, `12h`, `30m` or `45s`.
pub fn parse_duration_ms(text: &str) -> Result<i64, CliError> {
    let invalid = || {
        CliError::Input(format!(
            "invalid duration {text:?}: a positive number followed by s, m, h or d (e.g. 90d)"
        ))
    };
    let split = text.len().checked_sub(1).ok_or_else(invalid)?;
    let (number, unit) = (text.get(..split).ok_or_else(invalid)?, &text[split..]);
    let number: i64 = number.parse().map_err(|_| invalid())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(invalid()),
    };
    if number <= 0 {
        return Err(invalid());
    }
    number.checked_mul(unit_ms).ok_or_else(invalid)
}

fn time_text(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp.map_or_else(
        || "-".to_owned(),
        |timestamp| unix_ms_from_timestamp(timestamp).to_string(),
    )
}

fn key_json(key: &pb::KeyInfo) -> serde_json::Value {
    json!({
        "key_id": key.key_id,
        "namespace": key.namespace,
        "role": key.role,
        "label": key.label,
        "created_at_ms": key.created_at.as_ref().map(unix_ms_from_timestamp),
        "expires_at_ms": key.expires_at.as_ref().map(unix_ms_from_timestamp),
        "revoked_at_ms": key.revoked_at.as_ref().map(unix_ms_from_timestamp),
    })
}

pub async fn run(command: KeyCommand) -> Result<ExitCode, CliError> {
    match command {
        KeyCommand::Create {
            role,
            label,
            expires,
            client,
        } => {
            let expires_at = expires
                .as_deref()
                .map(parse_duration_ms)
                .transpose()?
                .map(|ms| timestamp_from_unix_ms(crate::clock::now_unix_ms().saturating_add(ms)));
            let mut service = KeyServiceClient::new(client.namespaced_channel().await?);
            let response = service
                .create_key(pb::CreateKeyRequest {
                    namespace: client.namespace.clone(),
                    role,
                    label,
                    expires_at,
                })
                .await?
                .into_inner();
            let key = response.key.unwrap_or_default();
            if client.json {
                let mut value = key_json(&key);
                value["secret"] = json!(response.secret);
                println!("{value}");
            } else {
                eprintln!(
                    "created key {} ({} in namespace {}); its secret, shown only now:",
                    key.key_id, key.role, key.namespace
                );
                println!("{}", response.secret);
            }
        }
        KeyCommand::List { client } => {
            let mut service = KeyServiceClient::new(client.namespaced_channel().await?);
            let keys = service
                .list_keys(pb::ListKeysRequest::default())
                .await?
                .into_inner()
                .keys;
            if client.json {
                let values: Vec<_> = keys.iter().map(key_json).collect();
                println!("{}", serde_json::Value::Array(values));
            } else {
                println!(
                    "{:<38} {:<16} {:<9} {:<15} {:<15} LABEL",
                    "KEY", "NAMESPACE", "ROLE", "EXPIRES_MS", "REVOKED_MS"
                );
                for key in &keys {
                    println!(
                        "{:<38} {:<16} {:<9} {:<15} {:<15} {}",
                        key.key_id,
                        key.namespace,
                        key.role,
                        time_text(key.expires_at.as_ref()),
                        time_text(key.revoked_at.as_ref()),
                        key.label
                    );
                }
            }
        }
        KeyCommand::Revoke { key_id, client } => {
            let mut service = KeyServiceClient::new(client.namespaced_channel().await?);
            let key = service
                .revoke_key(pb::RevokeKeyRequest { key_id })
                .await?
                .into_inner()
                .key
                .unwrap_or_default();
            if client.json {
                println!("{}", key_json(&key));
            } else {
                println!("revoked key {}", key.key_id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_and_refuse_the_rest() {
        assert_eq!(parse_duration_ms("90d").expect("90d"), 90 * 86_400_000);
        assert_eq!(parse_duration_ms("2s").expect("2s"), 2_000);
        for bad in ["", "d", "10", "-1h", "0m", "1w", "1.5h", "é"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }
}
