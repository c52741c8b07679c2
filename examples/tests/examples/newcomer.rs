//! The first hour as examples/README.md tells it, with real processes only:
//! `tributary serve` in one terminal, an example as a worker in another,
//! and the CLI registering the workflow, starting a run with `--wait` and
//! watching it. The run is started before any worker is up, as a newcomer
//! might: the id must come at once and the wait must say why it waits,
//! then end on its own once the worker arrives.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::LIMIT;

const CLI: &str = env!("CARGO_BIN_EXE_tributary_cli");
const EXAMPLE: &str = env!("CARGO_BIN_EXE_parallel_processing");
const WORKFLOW_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/parallel_processing.workflow.yaml"
);

/// A child process whose stdout and stderr are read line by line on
/// threads, so that a test can wait for a line while the process runs.
struct Running {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

impl Running {
    fn spawn(program: &str, args: &[&str]) -> Running {
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stdout = lines_of(child.stdout.take().expect("piped stdout"));
        let stderr = lines_of(child.stderr.take().expect("piped stderr"));
        Running {
            child,
            stdout,
            stderr,
        }
    }

    /// The next line of `stream` that contains `needle`, with every line
    /// read on the way.
    fn wait_for(stream: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match stream.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "no line with {needle:?} within {LIMIT:?}; saw:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the process to exit; returns its status and the rest of
    /// its stdout and stderr.
    fn finish(mut self) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("the process can be polled") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit within {LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest = |lines: &mpsc::Receiver<String>| {
            let mut text = Vec::new();
            while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
                text.push(line);
            }
            text.join("\n")
        };
        (status, rest(&self.stdout), rest(&self.stderr))
    }

    fn terminate(self) -> (ExitStatus, String, String) {
        // SAFETY: kill(2) with the pid of a child this test spawned and has
        // not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        self.finish()
    }
}

/// `tributary serve` as a process, once it answers SERVING.
fn start_server(listen: &str, database: &str) -> Running {
    let server = Running::spawn(
        CLI,
        &[
            "serve",
            "--listen",
            listen,
            "--database-url",
            database,
            "--log-level",
            "warn",
        ],
    );
    let url = format!("http://{listen}");
    let deadline = Instant::now() + LIMIT;
    while !cli(&["health", "--server", &url]).status.success() {
        assert!(Instant::now() < deadline, "the server never became healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// A loopback address with a port nothing listens on yet.
fn free_listen_address() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    format!("127.0.0.1:{port}")
}

fn cli(args: &[&str]) -> Output {
    Command::new(CLI).args(args).output().expect("the CLI runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn clone_to_a_watched_run_with_the_cli_and_an_example_worker() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let listen = free_listen_address();
    let url = format!("http://{listen}");
    let database = format!(
        "sqlite://{}",
        directory.path().join("tributary.db").display()
    );

    // Terminal 1: the server.
    let server = start_server(&listen, &database);
    // Terminal 3: register the example's workflow, start a run and wait.
    let registered = cli(&["workflow", "register", WORKFLOW_FILE, "--server", &url]);
    assert!(registered.status.success(), "{registered:?}");
    assert!(
        text(&registered.stdout).starts_with("registered workflow parallel_processing version "),
        "{}",
        text(&registered.stdout)
    );
    let input = directory.path().join("input.json");
    std::fs::write(&input, r#"{"source": "newcomer"}"#).expect("input written");
    let input_arg = format!("@{}", input.display());
    let mut waiting = Running::spawn(
        CLI,
        &[
            "run",
            "start",
            "parallel_processing",
            "--input",
            &input_arg,
            "--wait",
            "--server",
            &url,
        ],
    );
    // The id comes at once, while no worker serves anything yet.
    let run_id = waiting
        .stdout
        .recv_timeout(LIMIT)
        .expect("the run id is printed before the run ends");
    assert_eq!(run_id.len(), 36, "a run id: {run_id:?}");
    assert!(
        waiting.child.try_wait().expect("pollable").is_none(),
        "still waiting"
    );
    // And the wait says why it waits.
    let mut stderr_seen = Vec::new();
    let hint = Running::wait_for(&waiting.stderr, "still waiting:", &mut stderr_seen);
    assert!(hint.contains("generate_data READY for 5s"), "{hint}");
    assert!(hint.contains("--worker"), "{hint}");

    // Terminal 2: the example as a worker only.
    let worker = Running::spawn(EXAMPLE, &["--server", &url, "--worker", "--no-sleep"]);
    let mut worker_seen = Vec::new();
    Running::wait_for(&worker.stderr, "connected to", &mut worker_seen);

    let (status, stdout, stderr) = waiting.finish();
    assert!(status.success(), "the run succeeded: {stdout}\n{stderr}");
    assert!(stdout.contains(&format!("run:       {run_id}")), "{stdout}");
    assert!(stdout.contains("status:    succeeded"), "{stdout}");
    assert!(stdout.contains("finished:  20"), "{stdout}");
    assert!(!stderr.contains("error"), "{stderr}");

    // Watching it afterwards replays its events with their times.
    let watched = cli(&["run", "watch", &run_id, "--server", &url]);
    assert!(watched.status.success(), "{watched:?}");
    let events = text(&watched.stdout);
    let last = events.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("20") && last.contains("run_finished"),
        "{events}"
    );
    assert!(last.contains("succeeded in "), "{last}");

    // `run get ID | head -1`: the reader leaves early; no panic, no error.
    let mut child = Command::new(CLI)
        .args(["run", "get", &run_id, "--context", "--server", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the CLI runs");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut first)
        .expect("one line");
    assert_eq!(first.trim_end(), format!("run:       {run_id}"));
    let output = child.wait_with_output().expect("the CLI ends");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));

    let (status, _, stderr) = worker.terminate();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("stopped on SIGTERM"), "{stderr}");

    // A run left waiting with no worker up is served by the next worker,
    // here the example's own in its one-run mode, which says so.
    let leftover = cli(&["run", "start", "parallel_processing", "--server", &url]);
    assert!(leftover.status.success(), "{leftover:?}");
    let leftover_id = text(&leftover.stdout).trim().to_owned();
    let example = Command::new(EXAMPLE)
        .args(["--server", &url, "--no-sleep"])
        .output()
        .expect("the example runs");
    let stderr = text(&example.stderr);
    assert!(example.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "other runs of parallel_processing, started elsewhere and waiting for a worker: "
        ) && stderr.contains(&leftover_id),
        "{stderr}"
    );

    let (status, _, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn run_start_wait_follows_the_run_across_a_server_restart() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let listen = free_listen_address();
    let url = format!("http://{listen}");
    let database = format!(
        "sqlite://{}",
        directory.path().join("tributary.db").display()
    );
    let server = start_server(&listen, &database);
    let registered = cli(&["workflow", "register", WORKFLOW_FILE, "--server", &url]);
    assert!(registered.status.success(), "{registered:?}");
    let waiting = Running::spawn(
        CLI,
        &[
            "run",
            "start",
            "parallel_processing",
            "--wait",
            "--no-context",
            "--server",
            &url,
        ],
    );
    let run_id = waiting.stdout.recv_timeout(LIMIT).expect("the run id");

    // The server goes away and comes back on the same address and database.
    let (status, _, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
    let mut seen = Vec::new();
    let broke = Running::wait_for(&waiting.stderr, "the watch of run", &mut seen);
    assert!(broke.contains("watching again after event"), "{broke}");
    let server = start_server(&listen, &database);
    let worker = Running::spawn(EXAMPLE, &["--server", &url, "--worker", "--no-sleep"]);

    let (status, stdout, stderr) = waiting.finish();
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("run:       {run_id}")), "{stdout}");
    assert!(stdout.contains("status:    succeeded"), "{stdout}");
    let (status, _, stderr) = worker.terminate();
    assert!(status.success(), "{stderr}");
    let (status, _, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}
