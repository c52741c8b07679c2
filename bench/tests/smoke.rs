//! Runs every scenario of the real benchmark binary at its smoke sizes, on
//! SQLite and, when `TRIBUTARY_TEST_DATABASE_URL` names a Postgres admin
//! connection (as `scripts/test.sh` sets it), on Postgres too. It checks
//! that the tool works and reports what it measured; it asserts nothing
//! about speed.

use std::process::Command;

use serde_json::Value;

#[test]
fn every_scenario_runs_and_reports_its_measurements() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tributary-bench"));
    command.args(["--smoke", "--json"]);
    let postgres = std::env::var("TRIBUTARY_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty());
    let databases: &[&str] = match &postgres {
        Some(url) => {
            command.args(["--database", "sqlite,postgres", "--postgres-url", url]);
            &["sqlite", "postgres"]
        }
        None => &["sqlite"],
    };
    let output = command.output().expect("the benchmark runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}: {stderr}",
        output.status
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");

    // (label, tasks, dispatch samples) at the smoke sizes: a chain of 20,
    // a fan-out of 20, 10 diamonds, one seed run on one worker and one on
    // three, 5 idle executors, a map over 20 elements.
    let expected = [
        ("chain 20", 20, 19),
        ("fan-out 20", 22, 21),
        ("diamonds x10", 40, 30),
        ("seed x1", 9, 8),
        ("seed x1, 3 workers", 9, 8),
        ("5 idle + chain 20", 20, 19),
        // root, 20 instances and join; every instance and join wait.
        ("map 20", 22, 21),
    ];
    let results = report["results"].as_array().expect("results");
    assert_eq!(
        results.len(),
        expected.len() * databases.len(),
        "{report:#}"
    );
    for database in databases {
        for (label, tasks, samples) in expected {
            let result = results
                .iter()
                .find(|result| result["scenario"] == label && result["database"] == *database)
                .unwrap_or_else(|| panic!("no {label} on {database}: {report:#}"));
            assert_eq!(result["tasks"], tasks, "{result:#}");
            assert_eq!(result["failed_runs"], 0, "{result:#}");
            assert_eq!(result["dispatch"]["samples"], samples, "{result:#}");
            let p50 = result["dispatch"]["p50_ms"].as_f64().expect("p50");
            let max = result["dispatch"]["max_ms"].as_f64().expect("max");
            assert!(0.0 <= p50 && p50 <= max, "{result:#}");
            assert!(
                result["wall_ms"].as_f64().expect("wall") > 0.0,
                "{result:#}"
            );
            assert!(
                result["rss_peak_mib"].as_f64().expect("rss") > 0.0,
                "{result:#}"
            );
            assert!(result["server_cpu_ms"].as_f64().is_some(), "{result:#}");
            assert!(
                !result["durability"]
                    .as_str()
                    .expect("durability")
                    .is_empty()
            );
        }
        let executors = results
            .iter()
            .find(|result| {
                result["scenario"] == "5 idle + chain 20" && result["database"] == *database
            })
            .expect("executors scenario");
        assert_eq!(executors["executor_cost"]["idle_executors"], 5);
        let diamonds = results
            .iter()
            .find(|result| result["scenario"] == "diamonds x10" && result["database"] == *database)
            .expect("diamonds scenario");
        let quarters = diamonds["rss_by_quarter_mib"].as_array().expect("quarters");
        assert_eq!(quarters.len(), 4, "{diamonds:#}");
        let seed = results
            .iter()
            .find(|result| result["scenario"] == "seed x1" && result["database"] == *database)
            .expect("seed scenario");
        assert!(seed["run_wall_ms"].as_f64().is_some(), "{seed:#}");
        for label in ["seed x1", "seed x1, 3 workers"] {
            let seed = results
                .iter()
                .find(|result| result["scenario"] == label && result["database"] == *database)
                .expect("seed scenario");
            let traffic = &seed["context_traffic"];
            assert!(
                traffic["result_bytes_per_run"].as_f64().expect("results") > 0.0,
                "{seed:#}"
            );
            assert!(
                traffic["references_per_run"].as_f64().expect("references") > 0.0,
                "the workers cache values, so the server names some: {seed:#}"
            );
            assert_eq!(
                traffic["sent_per_run_by_worker"]
                    .as_array()
                    .expect("per worker")
                    .len(),
                if label == "seed x1" { 1 } else { 3 },
                "{seed:#}"
            );
        }
    }
    if postgres.is_some() {
        let durability = results
            .iter()
            .find(|result| result["database"] == "postgres")
            .and_then(|result| result["durability"].as_str())
            .expect("postgres durability");
        assert!(durability.contains("fsync="), "{durability}");
    }
}
