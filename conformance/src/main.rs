//! `tributary-conformance`: runs the scenarios of `conformance/SPEC.md`
//! against an SDK's conformance worker, each on a fresh `tributary` server,
//! and prints `PASS name` or `FAIL name: why` per scenario and a closing
//! `N passed, N failed`.

mod checks;
mod executors;
mod harness;
mod json;
mod log;
mod process;
mod scenarios;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::harness::{Harness, Suite};

/// A scenario that has not finished after this long has failed; a safety
/// net far above what any scenario needs.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(180);

/// Runs the executor-protocol conformance scenarios against a worker.
#[derive(Debug, Parser)]
#[command(name = "tributary-conformance", version)]
struct Args {
    /// The command that starts the SDK's conformance worker, run with
    /// `sh -c` and the environment of conformance/SPEC.md.
    #[arg(long)]
    worker_cmd: String,
    /// The `tributary` server binary [default: $TRIBUTARY_BIN, else
    /// target/release/tributary, else target/debug/tributary].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Run only these scenarios (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("tributary-conformance: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let server_bin = match args.server_bin {
        Some(path) => path,
        None => default_server_bin()?,
    };
    if !server_bin.is_file() {
        return Err(format!("no server binary at {}", server_bin.display()));
    }
    let selected = select(&args.only)?;
    let suite = Suite {
        worker_cmd: args.worker_cmd,
        server_bin,
    };
    let (mut passed, mut failed) = (0, 0);
    for scenario in selected {
        match run_scenario(&suite, scenario).await {
            Ok(()) => {
                passed += 1;
                println!("PASS {scenario}");
            }
            Err((why, details)) => {
                failed += 1;
                println!("FAIL {scenario}: {why}");
                for line in details {
                    println!("    {line}");
                }
            }
        }
        let _ = std::io::stdout().flush();
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

/// Runs one scenario on a fresh server; a failure comes with the lines that
/// help to understand it.
async fn run_scenario(suite: &Suite, scenario: &str) -> Result<(), (String, Vec<String>)> {
    let mut harness = Harness::start(suite, scenarios::server_options(scenario))
        .await
        .map_err(|why| (why, Vec::new()))?;
    let outcome = tokio::time::timeout(SCENARIO_DEADLINE, scenarios::run(scenario, &mut harness))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "not finished after {} s",
                SCENARIO_DEADLINE.as_secs()
            ))
        })
        .and_then(|()| log_is_consistent(&harness));
    match outcome {
        Ok(()) => {
            harness.shut_down().await;
            Ok(())
        }
        Err(why) => Err((why, harness.failure_details())),
    }
}

/// Every scenario's log must parse, and no attempt may run twice in one
/// process.
fn log_is_consistent(harness: &Harness) -> Result<(), String> {
    let errors = log::pairing_errors(&harness.log()?);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the worker log is inconsistent: {}",
            errors.join("; ")
        ))
    }
}

/// The scenarios named by `--only`, in the suite's order; all without it.
fn select(only: &[String]) -> Result<Vec<&'static str>, String> {
    if let Some(unknown) = only
        .iter()
        .find(|name| !scenarios::SCENARIOS.contains(&name.as_str()))
    {
        return Err(format!(
            "unknown scenario {:?} in --only; the scenarios are: {}",
            json::brief(unknown, 64),
            scenarios::SCENARIOS.join(", ")
        ));
    }
    Ok(scenarios::SCENARIOS
        .iter()
        .copied()
        .filter(|name| only.is_empty() || only.iter().any(|wanted| wanted == name))
        .collect())
}

/// `$TRIBUTARY_BIN`, else the repository's release build, else its debug
/// build.
fn default_server_bin() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("TRIBUTARY_BIN").filter(|path| !path.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    ["release", "debug"]
        .iter()
        .map(|profile| repository.join("target").join(profile).join("tributary"))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            "no server binary: set TRIBUTARY_BIN, pass --server-bin, or build target/release/tributary or target/debug/tributary".to_owned()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_selects_in_suite_order_and_names_unknown_scenarios() {
        let selected = select(&["vectors".into(), "echo_lossless".into()]).expect("known");
        assert_eq!(selected, ["echo_lossless", "vectors"]);
        assert_eq!(select(&[]).expect("all").len(), scenarios::SCENARIOS.len());
        let error = select(&["nope".into()]).unwrap_err();
        assert!(
            error.starts_with("unknown scenario \"nope\" in --only"),
            "{error}"
        );
    }
}
