//! The server at its file-descriptor limit: a real `tributary serve`
//! process started with a limit of 64 open files (soft and hard, so it
//! cannot raise it) is flooded with connections. Accepting must then back
//! off instead of spinning on EMFILE, and resume once descriptors are free.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const LIMIT: Duration = Duration::from_secs(30);

/// CPU time the process has used, in clock ticks (user + system).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    // The command name (field 2) is in parentheses and may hold spaces;
    // utime and stime are fields 14 and 15, the 12th and 13th after it.
    let after_name = &stat[stat.rfind(')').expect("name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn clock_ticks_per_second() -> u64 {
    let output = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf runs");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a number")
}

async fn healthy(url: &str) -> bool {
    let Ok(channel) = Endpoint::from_shared(url.to_owned())
        .expect("valid URL")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
    else {
        return false;
    };
    tokio::time::timeout(
        Duration::from_secs(2),
        HealthClient::new(channel).check(HealthCheckRequest::default()),
    )
    .await
    .is_ok_and(|answer| answer.is_ok())
}

fn log_lines_with(log: &Path, text: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(text))
        .count()
}

#[tokio::test]
async fn at_the_descriptor_limit_accepting_backs_off_instead_of_spinning() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let log = directory.path().join("server.log");
    let port = tributary_e2e::ports::reserved_port();
    let url = format!("http://127.0.0.1:{port}");
    let database_url = format!("sqlite://{}", directory.path().join("t.db").display());
    let mut server = Command::new("sh")
        .arg("-c")
        // `ulimit -n` sets the soft and the hard limit, so the server's
        // raise at start cannot lift it.
        .arg(r#"ulimit -n 64 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_test_server"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &database_url,
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("server starts");
    let pid = server.id().expect("a pid");
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !healthy(&url).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // More connections than descriptors: the kernel completes them in the
    // listen backlog, and the server runs out of descriptors accepting.
    // Once the backlog is full too, a connect waits; that is enough.
    let mut connections = Vec::new();
    for _ in 0..150 {
        let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
        match tokio::time::timeout(Duration::from_millis(500), connect).await {
            Ok(Ok(connection)) => connections.push(connection),
            _ => break,
        }
    }
    let deadline = tokio::time::Instant::now() + LIMIT;
    while open_descriptors(pid) < 64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never reached its descriptor limit: {} open",
            open_descriptors(pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Out of descriptors with connections waiting: a spinning accept loop
    // burns a whole core (about 100 % of the window when the machine is
    // idle); one that backs off sleeps (0 ticks here). The bound, a fifth
    // of a core, leaves room for a busy machine's noise.
    let ticks_per_second = clock_ticks_per_second();
    let before = cpu_ticks(pid);
    let window = Duration::from_secs(2);
    tokio::time::sleep(window).await;
    let used = cpu_ticks(pid) - before;
    let budget = ticks_per_second * window.as_secs() / 5;
    assert!(
        used < budget,
        "the server used {used} ticks of CPU in {window:?} at its descriptor limit (budget {budget})"
    );
    // One warning per burst, not per failed accept: a burst ends only when
    // a descriptor frees up and a connection is accepted, which happens
    // rarely here, never once per backoff.
    let warnings = log_lines_with(&log, "cannot accept connections");
    assert!((1..=5).contains(&warnings), "{warnings} warnings");

    // Descriptors freed, the server accepts and answers again.
    drop(connections);
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !healthy(&url).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not recover after connections closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill().await.expect("kill");
}
