//! TLS and mutual TLS over real sockets through the `tributary` CLI, the
//! messages that name a scheme not matching the server, and the refusal to
//! listen beyond loopback without keys and TLS.

use std::process::{Output, Stdio};
use std::time::Duration;

use tributary_e2e::security::{BOOTSTRAP_KEY, TestCertificates};
use tributary_e2e::{TestDatabase, TestServer};
use tributary_server::config::ServeConfig;
use tributary_server::security::Secret;

async fn tributary(arguments: &[&str]) -> Output {
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_test_server"))
            .args(arguments)
            .env_remove("TRIBUTARY_API_KEY")
            .output(),
    )
    .await
    .expect("the CLI ends in time")
    .expect("the CLI runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn tls_server(certificates: &TestCertificates, mutual: bool) -> TestServer {
    TestServer::start_with(|config| {
        config.security.tls_cert = Some(certificates.path("server.pem"));
        config.security.tls_key = Some(certificates.path("server.key"));
        if mutual {
            config.security.tls_client_ca = Some(certificates.path("ca.pem"));
        }
    })
    .await
}

#[tokio::test]
async fn the_cli_speaks_tls_and_names_a_scheme_that_does_not_match() {
    let certificates = TestCertificates::generate();
    let secure = tls_server(&certificates, false).await;
    let plain = TestServer::start().await;
    let ca = certificates.path("ca.pem");
    let ca = ca.to_str().expect("path");
    let https_url = secure.url();
    assert!(https_url.starts_with("https://"), "{https_url}");

    let healthy = tributary(&["health", "--server", &https_url, "--tls-ca", ca]).await;
    assert!(healthy.status.success(), "{}", stderr(&healthy));
    assert_eq!(String::from_utf8_lossy(&healthy.stdout).trim(), "SERVING");
    let listed = tributary(&["workflow", "list", "--server", &https_url, "--tls-ca", ca]).await;
    assert!(listed.status.success(), "{}", stderr(&listed));

    // http:// against the TLS server.
    let http_url = https_url.replacen("https://", "http://", 1);
    let output = tributary(&["workflow", "list", "--server", &http_url]).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(&format!(
            "the server at {http_url} expects TLS: use https:// instead of http://"
        )),
        "{}",
        stderr(&output)
    );
    // https:// against the plaintext server.
    let wrong = plain.url().replacen("http://", "https://", 1);
    let output = tributary(&["health", "--server", &wrong, "--tls-ca", ca]).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(&format!(
            "the server at {wrong} does not speak TLS: use http:// instead of https://"
        )),
        "{}",
        stderr(&output)
    );
    // A certificate the client does not trust (system roots only).
    let output = tributary(&["health", "--server", &https_url]).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("certificate"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate_of_the_ca() {
    let certificates = TestCertificates::generate();
    let server = TestServer::start_with(|config| {
        config.security.tls_cert = Some(certificates.path("server.pem"));
        config.security.tls_key = Some(certificates.path("server.key"));
        config.security.tls_client_ca = Some(certificates.path("ca.pem"));
        config.security.admin_key = Some(Secret::new(BOOTSTRAP_KEY));
    })
    .await;
    let url = server.url();
    let path = |name: &str| certificates.path(name).to_str().expect("path").to_owned();
    let ca = path("ca.pem");

    let without = tributary(&[
        "workflow",
        "list",
        "--server",
        &url,
        "--tls-ca",
        &ca,
        "--api-key",
        BOOTSTRAP_KEY,
    ])
    .await;
    assert!(!without.status.success(), "no client certificate");
    let stranger = tributary(&[
        "workflow",
        "list",
        "--server",
        &url,
        "--tls-ca",
        &ca,
        "--api-key",
        BOOTSTRAP_KEY,
        "--tls-client-cert",
        &path("stranger.pem"),
        "--tls-client-key",
        &path("stranger.key"),
    ])
    .await;
    assert!(!stranger.status.success(), "a certificate of another CA");
    let trusted = [
        "--server",
        url.as_str(),
        "--tls-ca",
        ca.as_str(),
        "--tls-client-cert",
        &path("client.pem"),
        "--tls-client-key",
        &path("client.key"),
    ]
    .map(str::to_owned);
    let args = |command: &[&str], key: Option<&str>| {
        let mut all: Vec<String> = command.iter().map(|part| part.to_string()).collect();
        all.extend(trusted.iter().cloned());
        if let Some(key) = key {
            all.extend(["--api-key".to_owned(), key.to_owned()]);
        }
        all
    };
    let run = |arguments: Vec<String>| async move {
        let borrowed: Vec<&str> = arguments.iter().map(String::as_str).collect();
        tributary(&borrowed).await
    };
    // The certificate opens the connection; the key still decides the calls.
    let anonymous = run(args(&["workflow", "list"], None)).await;
    assert!(!anonymous.status.success());
    assert!(
        stderr(&anonymous).contains("Unauthenticated"),
        "{}",
        stderr(&anonymous)
    );
    let listed = run(args(&["workflow", "list"], Some(BOOTSTRAP_KEY))).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
}

#[tokio::test]
async fn the_key_commands_create_list_and_revoke_over_tls() {
    let certificates = TestCertificates::generate();
    let server = TestServer::start_with(|config| {
        config.security.tls_cert = Some(certificates.path("server.pem"));
        config.security.tls_key = Some(certificates.path("server.key"));
        config.security.admin_key = Some(Secret::new(BOOTSTRAP_KEY));
    })
    .await;
    let url = server.url();
    let ca = certificates.path("ca.pem");
    let ca = ca.to_str().expect("path");
    let common = ["--server", url.as_str(), "--tls-ca", ca];
    let with = |command: &[&str], key: &str| {
        let mut all: Vec<String> = command.iter().map(|part| part.to_string()).collect();
        all.extend(common.iter().map(|part| part.to_string()));
        all.extend(["--api-key".to_owned(), key.to_owned()]);
        all
    };
    let run = |arguments: Vec<String>| async move {
        let borrowed: Vec<&str> = arguments.iter().map(String::as_str).collect();
        tributary(&borrowed).await
    };
    let created = run(with(
        &[
            "key",
            "create",
            "--namespace",
            "finance",
            "--role",
            "client",
            "--label",
            "ci",
            "--expires",
            "1d",
        ],
        BOOTSTRAP_KEY,
    ))
    .await;
    assert!(created.status.success(), "{}", stderr(&created));
    let secret = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert!(secret.starts_with("trb_"), "{secret}");
    assert!(
        stderr(&created).contains("shown only now"),
        "{}",
        stderr(&created)
    );

    let listed = run(with(
        &["workflow", "list", "--namespace", "finance"],
        &secret,
    ))
    .await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let denied = run(with(
        &["workflow", "list", "--namespace", "default"],
        &secret,
    ))
    .await;
    assert!(!denied.status.success());
    assert!(
        stderr(&denied).contains("PermissionDenied"),
        "{}",
        stderr(&denied)
    );

    let keys = run(with(&["key", "list", "--json"], BOOTSTRAP_KEY)).await;
    assert!(keys.status.success(), "{}", stderr(&keys));
    let keys: serde_json::Value = serde_json::from_slice(&keys.stdout).expect("JSON");
    let key = &keys.as_array().expect("array")[0];
    assert_eq!(key["namespace"], "finance");
    assert_eq!(key["role"], "client");
    assert!(key["expires_at_ms"].as_i64().is_some());
    assert!(!String::from_utf8_lossy(&serde_json::to_vec(&keys).expect("JSON")).contains(&secret));
    let key_id = key["key_id"].as_str().expect("id").to_owned();

    let revoked = run(with(&["key", "revoke", &key_id], BOOTSTRAP_KEY)).await;
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let refused = run(with(
        &["workflow", "list", "--namespace", "finance"],
        &secret,
    ))
    .await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("Unauthenticated"),
        "{}",
        stderr(&refused)
    );
    assert!(stderr(&refused).contains("revoked"), "{}", stderr(&refused));
}

#[tokio::test]
async fn unreadable_or_invalid_tls_files_stop_the_start() {
    let certificates = TestCertificates::generate();
    let database = TestDatabase::fresh().await;
    let mut config = ServeConfig::new("127.0.0.1:0".parse().expect("address"), database.url());
    config.security.tls_cert = Some(certificates.path("missing.pem"));
    config.security.tls_key = Some(certificates.path("server.key"));
    let error = tributary_server::server::start(&config)
        .await
        .err()
        .expect("a missing certificate file");
    assert!(error.to_string().contains("missing.pem"), "{error}");
    config.security.tls_cert = Some(certificates.path("server.key"));
    let error = tributary_server::server::start(&config)
        .await
        .err()
        .expect("a key where the certificate should be");
    assert!(!error.to_string().is_empty());
}

#[tokio::test]
async fn listening_beyond_loopback_needs_keys_and_tls_or_insecure() {
    // The binary refuses, says why, and exits non-zero.
    let database = TestDatabase::fresh().await;
    let output = tributary(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--database-url",
        database.url(),
    ])
    .await;
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("refusing to listen on 0.0.0.0:0 without API keys and TLS"),
        "{message}"
    );
    assert!(message.contains("--insecure"), "{message}");

    // The library says which half is missing.
    let exposed = |adjust: &dyn Fn(&mut ServeConfig)| {
        let mut config = ServeConfig::new("0.0.0.0:0".parse().expect("address"), database.url());
        adjust(&mut config);
        config
    };
    let certificates = TestCertificates::generate();
    let keys_only = exposed(&|config| {
        config.security.admin_key = Some(Secret::new(BOOTSTRAP_KEY));
    });
    let error = tributary_server::server::start(&keys_only)
        .await
        .err()
        .expect("keys without TLS are refused");
    assert!(error.to_string().contains("without TLS"), "{error}");
    let both = exposed(&|config| {
        config.security.admin_key = Some(Secret::new(BOOTSTRAP_KEY));
        config.security.tls_cert = Some(certificates.path("server.pem"));
        config.security.tls_key = Some(certificates.path("server.key"));
    });
    let server = tributary_server::server::start(&both)
        .await
        .expect("keys and TLS may listen anywhere");
    server.shutdown().await.expect("stops");

    // --insecure starts the binary on 0.0.0.0 without either.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port();
    let listen = format!("0.0.0.0:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_test_server"))
        .args([
            "serve",
            "--listen",
            &listen,
            "--database-url",
            database.url(),
            "--insecure",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let health = tributary(&["health", "--server", &url]).await;
        if health.status.success() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the insecure server never became healthy: {}",
            stderr(&health)
        );
        assert!(
            child.try_wait().expect("status").is_none(),
            "the server exited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().await.expect("kill");
}
