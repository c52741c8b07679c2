//! What a benchmark reports: one result per scenario, as a table or JSON.

use std::fmt::Write;

use serde::Serialize;

use crate::database::DatabaseKind;
use crate::timeline::Percentiles;

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub database: DatabaseKind,
    /// The database's durability settings during the run.
    pub durability: String,
    pub runs: usize,
    pub tasks: usize,
    /// Runs that did not succeed (always 0 unless something is broken).
    pub failed_runs: usize,
    pub wall_ms: f64,
    /// Wall time per run, for scenarios whose runs go one after the other.
    pub run_wall_ms: Option<f64>,
    pub tasks_per_second: f64,
    pub runs_per_second: f64,
    /// Handler return of the last dependency to handler entry of the
    /// dependant (see timeline.rs).
    pub dispatch: Option<Percentiles>,
    pub server_cpu_ms: f64,
    /// Server CPU time over wall time (200 % = both cores of this machine).
    pub server_cpu_percent: f64,
    /// CPU of this process (the workers, the client and their tasks) over
    /// wall time; with the server's, how busy the machine was.
    pub client_cpu_percent: f64,
    pub rss_start_mib: f64,
    pub rss_end_mib: f64,
    pub rss_peak_mib: f64,
    /// Server RSS after a quarter, half, three quarters and all of the runs
    /// finished (scenarios of at least four concurrent runs).
    pub rss_by_quarter_mib: Vec<f64>,
    pub executor_cost: Option<ExecutorCost>,
    /// Context JSON moved between the server and the workers (seed).
    pub context_traffic: Option<ContextTraffic>,
}

/// Context JSON on the wire, per run, as the server counted it
/// (`ListExecutors`) and as the database stored the results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ContextTraffic {
    /// Bytes of context JSON the server sent by value (Assign inputs and
    /// fetched values), all workers together.
    pub sent_per_run: f64,
    /// The same, per worker.
    pub sent_per_run_by_worker: Vec<f64>,
    /// Values the server sent by reference instead.
    pub references_per_run: f64,
    /// Bytes of results' `set_json` the workers sent.
    pub result_bytes_per_run: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExecutorCost {
    pub idle_executors: usize,
    /// Server memory per connected executor.
    pub rss_per_executor_kib: f64,
    /// Server CPU while only the idle executors' heartbeats flow.
    pub idle_cpu_percent: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub results: Vec<ScenarioResult>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub build: &'static str,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|line| line.strip_prefix("model name"))
                    .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            build: if cfg!(debug_assertions) {
                "debug (numbers are not representative: build with --release)"
            } else {
                "release"
            },
        }
    }
}

impl Report {
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "machine: {} CPUs, {}; {} build",
            self.machine.cpus, self.machine.cpu_model, self.machine.build
        );
        let mut durabilities: Vec<(DatabaseKind, &str)> = self
            .results
            .iter()
            .map(|result| (result.database, result.durability.as_str()))
            .collect();
        durabilities.dedup();
        for (database, durability) in durabilities {
            let _ = writeln!(out, "{}: {durability}", name(database));
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<24} {:<8} {:>7} {:>9} {:>9} {:>8} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>9} {:>9}",
            "scenario",
            "db",
            "tasks",
            "wall ms",
            "tasks/s",
            "runs/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "srv %",
            "cli %",
            "rss MiB",
            "peak MiB"
        );
        for result in &self.results {
            let latency = |pick: fn(&Percentiles) -> f64| {
                result
                    .dispatch
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |p| format!("{:.2}", pick(p)))
            };
            let _ = writeln!(
                out,
                "{:<24} {:<8} {:>7} {:>9.1} {:>9.0} {:>8.1} {:>7} {:>7} {:>7} {:>7} {:>6.0} {:>6.0} {:>9} {:>9.1}",
                result.scenario,
                name(result.database),
                result.tasks,
                result.wall_ms,
                result.tasks_per_second,
                result.runs_per_second,
                latency(|p| p.p50_ms),
                latency(|p| p.p90_ms),
                latency(|p| p.p99_ms),
                latency(|p| p.max_ms),
                result.server_cpu_percent,
                result.client_cpu_percent,
                format!("{:.1}>{:.1}", result.rss_start_mib, result.rss_end_mib),
                result.rss_peak_mib,
            );
        }
        for result in &self.results {
            if let Some(run_wall) = result.run_wall_ms {
                let _ = writeln!(
                    out,
                    "{} on {}: {:.1} ms per run",
                    result.scenario,
                    name(result.database),
                    run_wall
                );
            }
            if let Some(traffic) = &result.context_traffic {
                let by_worker: Vec<String> = traffic
                    .sent_per_run_by_worker
                    .iter()
                    .map(|bytes| format!("{:.3}", bytes / 1e6))
                    .collect();
                let _ = writeln!(
                    out,
                    "{} on {}: per run, {:.3} MB of context sent to workers ({} by worker), {:.1} values by reference, {:.3} MB of results sent back; {:.3} MB in all",
                    result.scenario,
                    name(result.database),
                    traffic.sent_per_run / 1e6,
                    by_worker.join(" + "),
                    traffic.references_per_run,
                    traffic.result_bytes_per_run / 1e6,
                    (traffic.sent_per_run + traffic.result_bytes_per_run) / 1e6,
                );
            }
            if result.rss_by_quarter_mib.len() == 4 {
                let quarters: Vec<String> = result
                    .rss_by_quarter_mib
                    .iter()
                    .map(|mib| format!("{mib:.1}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "{} on {}: server RSS after 1/4, 1/2, 3/4, all runs: {} MiB",
                    result.scenario,
                    name(result.database),
                    quarters.join(", ")
                );
            }
            if let Some(cost) = &result.executor_cost {
                let _ = writeln!(
                    out,
                    "{} on {}: {} idle executors cost {:.1} KiB of server memory each, {:.1} % CPU while idle",
                    result.scenario,
                    name(result.database),
                    cost.idle_executors,
                    cost.rss_per_executor_kib,
                    cost.idle_cpu_percent
                );
            }
            if result.failed_runs > 0 {
                let _ = writeln!(
                    out,
                    "{} on {}: {} runs did not succeed",
                    result.scenario,
                    name(result.database),
                    result.failed_runs
                );
            }
        }
        out
    }
}

fn name(database: DatabaseKind) -> &'static str {
    match database {
        DatabaseKind::Sqlite => "sqlite",
        DatabaseKind::Postgres => "postgres",
    }
}
