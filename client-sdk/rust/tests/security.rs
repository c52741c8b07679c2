//! The SDK against a server with TLS, mutual TLS and API keys, over real
//! sockets: a run served by a worker with an executor key, roles enforced,
//! and the errors naming a URL scheme that does not match the server.

mod common;

use std::time::Duration;

use serde_json::json;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tributary::{Client, ConnectOptions, Error, RunStatus, Task, Worker, Workflow};
use tributary_e2e::security::{BOOTSTRAP_KEY, TestCertificates, create_key};
use tributary_server::security::Secret;

use common::{TestServer, within};

fn https_url(server: &TestServer) -> String {
    format!("https://{}", server.config.listen)
}

async fn tls_channel(url: &str, certificates: &TestCertificates) -> Channel {
    Channel::from_shared(url.to_owned())
        .expect("URL")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(certificates.pem("ca.pem"))),
        )
        .expect("TLS config")
        .connect()
        .await
        .expect("connects over TLS")
}

fn payroll() -> Workflow {
    Workflow::new("payroll").task(Task::new("pay", |context| {
        Box::pin(async move {
            let password: String = context.get("db_password")?;
            context.insert("paid_with", password.len())?;
            Ok(())
        })
    }))
}

#[tokio::test]
async fn a_client_and_a_worker_with_keys_run_a_workflow_over_tls() {
    let certificates = TestCertificates::generate();
    let server = TestServer::start_with(|config| {
        config.security.tls_cert = Some(certificates.path("server.pem"));
        config.security.tls_key = Some(certificates.path("server.key"));
        config.security.admin_key = Some(Secret::new(BOOTSTRAP_KEY));
    })
    .await;
    let url = https_url(&server);
    let channel = tls_channel(&url, &certificates).await;
    let client_key = create_key(channel.clone(), BOOTSTRAP_KEY, "finance", "client").await;
    let executor_key = create_key(channel, BOOTSTRAP_KEY, "finance", "executor").await;
    let trust = ConnectOptions::new().ca_certificate_pem(certificates.pem("ca.pem"));

    let workflow = payroll();
    // A key acts in its namespace; the client names the same one.
    let client = Client::connect_with(&url, &trust.clone().api_key(&client_key))
        .await
        .expect("connects with TLS")
        .with_namespace("finance")
        .expect("namespace");
    client
        .register_workflow(&workflow)
        .await
        .expect("registers");
    let worker = Worker::builder(&url)
        .namespace("finance")
        .connect_options(trust.clone().api_key(&executor_key))
        .workflow(&workflow)
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .start()
        .expect("starts");
    let started = client
        .start_run("payroll", json!({"db_password": "hunter2"}))
        .await
        .expect("starts a run");
    let run = within("the run", client.wait(&started.run_id))
        .await
        .expect("waits");
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.context["paid_with"], 7);

    // The executor's key may serve tasks, nothing else.
    let executor_as_client = Client::connect_with(&url, &trust.clone().api_key(&executor_key))
        .await
        .expect("connects")
        .with_namespace("finance")
        .expect("namespace");
    let error = executor_as_client
        .start_run("payroll", json!({}))
        .await
        .expect_err("an executor key cannot start runs");
    assert_eq!(error.code(), Some(tonic::Code::PermissionDenied));
    // No key at all.
    let anonymous = Client::connect_with(&url, &trust).await.expect("connects");
    let error = anonymous
        .get_run(&started.run_id)
        .await
        .expect_err("no key");
    assert_eq!(error.code(), Some(tonic::Code::Unauthenticated));
    worker.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn mutual_tls_needs_a_client_certificate_of_the_ca() {
    let certificates = TestCertificates::generate();
    let server = TestServer::start_with(|config| {
        config.security.tls_cert = Some(certificates.path("server.pem"));
        config.security.tls_key = Some(certificates.path("server.key"));
        config.security.tls_client_ca = Some(certificates.path("ca.pem"));
    })
    .await;
    let url = https_url(&server);
    let trust = ConnectOptions::new().ca_certificate_pem(certificates.pem("ca.pem"));
    let workflow = payroll();

    let refused = async |options: ConnectOptions| -> bool {
        match Client::connect_with(&url, &options).await {
            Err(_) => true,
            Ok(client) => client.register_workflow(&workflow).await.is_err(),
        }
    };
    assert!(refused(trust.clone()).await, "no client certificate");
    assert!(
        refused(trust.clone().client_identity_pem(
            certificates.pem("stranger.pem"),
            certificates.pem("stranger.key"),
        ))
        .await,
        "a certificate of another CA"
    );
    let client = Client::connect_with(
        &url,
        &trust.client_identity_pem(
            certificates.pem("client.pem"),
            certificates.pem("client.key"),
        ),
    )
    .await
    .expect("connects with a certificate");
    client
        .register_workflow(&workflow)
        .await
        .expect("a trusted certificate is let in");
}

#[tokio::test]
async fn a_scheme_that_does_not_match_the_server_is_named() {
    let certificates = TestCertificates::generate();
    let secure = TestServer::start_with(|config| {
        config.security.tls_cert = Some(certificates.path("server.pem"));
        config.security.tls_key = Some(certificates.path("server.key"));
    })
    .await;
    let plain = TestServer::start().await;

    let http_url = format!("http://{}", secure.config.listen);
    match Client::connect(&http_url).await {
        Err(Error::SchemeMismatch(message)) => assert_eq!(
            message,
            format!("the server at {http_url} expects TLS: use https:// instead of http://")
        ),
        other => panic!("expected a scheme mismatch, got {other:?}"),
    }
    let https_url = https_url(&plain);
    let trust = ConnectOptions::new().ca_certificate_pem(certificates.pem("ca.pem"));
    match Client::connect_with(&https_url, &trust).await {
        Err(Error::SchemeMismatch(message)) => assert_eq!(
            message,
            format!(
                "the server at {https_url} does not speak TLS: use http:// instead of https://"
            )
        ),
        other => panic!("expected a scheme mismatch, got {other:?}"),
    }
    // The plaintext server is fine over http://.
    Client::connect(plain.url())
        .await
        .expect("plaintext over http://")
        .list_runs(Default::default())
        .await
        .expect("lists");
}
