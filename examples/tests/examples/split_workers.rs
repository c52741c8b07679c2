//! The seed example split across processes, the way a mixed-language run
//! uses it: one `--worker-only` process serving the partitions, another
//! serving the other six tasks, and a `--no-worker` process starting the run
//! and printing the report. Here all three are the real binary; in a mixed
//! run a worker in another language takes the partitions' place. The server
//! runs in this test's process on a fresh SQLite file.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tributary::Client;
use tributary_server::config::ServeConfig;

use crate::LIMIT;

const BINARY: &str = env!("CARGO_BIN_EXE_parallel_processing");
const PARTITIONS: &str = "process_partition_1,process_partition_2,process_partition_3";
const THE_REST: &str =
    "generate_data,partition_data,combine_results,generate_report,send_notifications,cleanup";

/// A `--worker-only` process, its stderr read line by line on a thread.
struct WorkerProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
}

impl WorkerProcess {
    fn spawn(url: &str, handlers: &str) -> WorkerProcess {
        let mut child = Command::new(BINARY)
            .args(["--server", url, "--worker-only", "--no-sleep"])
            .args(["--handlers", handlers])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        WorkerProcess {
            child,
            lines,
            stderr: Vec::new(),
        }
    }

    /// The executor id from the line announcing the connection.
    fn executor_id(&mut self) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr.push(line.clone());
                    if let Some(rest) = line.strip_prefix("Worker ")
                        && let Some((id, _)) = rest.split_once(" connected to ")
                    {
                        return id.to_owned();
                    }
                }
                Err(_) => panic!(
                    "the worker did not say it connected:\n{}",
                    self.stderr.join("\n")
                ),
            }
        }
    }

    /// Sends SIGTERM and waits for the process to exit: its status and all
    /// it wrote on stderr.
    fn terminate(mut self) -> (ExitStatus, String) {
        let pid = i32::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) with a pid of our own child and a valid signal
        // number has no memory effects.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM was sent");
        let status = wait_with_limit(&mut self.child, "the worker's exit");
        // The reader sees end of file once the process is gone.
        while let Ok(line) = self.lines.recv_timeout(LIMIT) {
            self.stderr.push(line);
        }
        (status, self.stderr.join("\n"))
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // Only matters when the test failed half-way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_with_limit(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("the process can be waited for") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not happen within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the binary to its end: exit status, stdout, stderr.
fn run_to_end(args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(BINARY)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("piped stderr")));
    let status = wait_with_limit(&mut child, "the binary's exit");
    (
        status,
        stdout.join().expect("stdout read"),
        stderr.join().expect("stderr read"),
    )
}

#[test]
fn two_worker_only_processes_and_a_no_worker_run_split_the_seed_workflow() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let directory = tempfile::tempdir().expect("a temporary directory");
    let database_url = format!("sqlite://{}", directory.path().join("split.db").display());
    let server = runtime
        .block_on(tributary_server::server::start(&ServeConfig::new(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            &database_url,
        )))
        .expect("the server starts");
    let url = server.url();

    let mut partitions = WorkerProcess::spawn(&url, PARTITIONS);
    let mut the_rest = WorkerProcess::spawn(&url, THE_REST);
    let partitions_id = partitions.executor_id();
    let the_rest_id = the_rest.executor_id();
    assert_ne!(partitions_id, the_rest_id);

    let (status, stdout, stderr) = run_to_end(&["--server", &url, "--no-worker", "--no-sleep"]);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("All 9 tasks succeeded."), "{stdout}");
    assert!(
        stdout.contains("All               10,000    4,950,000     259,875,000.00"),
        "{stdout}"
    );
    // It ran nothing itself, so it has no measurement of the partitions.
    assert!(
        stdout.contains("Measured parallel efficiency: n/a"),
        "{stdout}"
    );

    // Each task ran once, on the worker that was told to serve it.
    let run_id = stderr
        .split("Started run ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id on stderr:\n{stderr}"))
        .to_owned();
    let run = runtime
        .block_on(async { Client::connect(url.as_str()).await?.get_run(&run_id).await })
        .expect("the run can be read");
    assert_eq!(run.tasks.len(), 9);
    for task in &run.tasks {
        let expected = if PARTITIONS.split(',').any(|id| id == task.task_id) {
            &partitions_id
        } else {
            &the_rest_id
        };
        let executors: Vec<&str> = task
            .attempts
            .iter()
            .map(|attempt| attempt.executor_id.as_str())
            .collect();
        assert_eq!(executors, [expected.as_str()], "{}", task.task_id);
    }

    for (worker, served) in [(partitions, 3), (the_rest, 6)] {
        let (status, stderr) = worker.terminate();
        assert!(status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "stopped on SIGTERM after {served} attempts: drained"
            )),
            "{stderr}"
        );
    }
    runtime
        .block_on(server.shutdown())
        .expect("the server stops");
}

#[test]
fn unknown_task_ids_are_named_before_connecting() {
    // Nothing listens on port 1: an error about connecting would mean the
    // ids were not checked first.
    let (status, _, stderr) = run_to_end(&[
        "--server",
        "http://127.0.0.1:1",
        "--worker-only",
        "--handlers",
        "cleanup,process_partition_4,load",
    ]);
    assert!(!status.success());
    assert!(
        stderr.contains(
            "error: unknown task ids in --handlers: \"process_partition_4\", \"load\"; \
             the tasks of parallel_processing are generate_data, partition_data,"
        ),
        "{stderr}"
    );
}

#[test]
fn worker_only_and_no_worker_need_a_server() {
    for flag in ["--worker-only", "--no-worker"] {
        let (status, _, stderr) = run_to_end(&[flag]);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("--server <URL>"), "{flag}: {stderr}");
    }
}
