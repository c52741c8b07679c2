//! What the example prints on stdout once the run is over: the run's status
//! (and every task's when it did not succeed), the per-category stats table,
//! the tutorial's parallel-efficiency figure, and the measured wall-clock
//! times with the parallelism actually achieved.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;
use tributary_proto::v1 as pb;

use crate::driver::Outcome;
use crate::executor::AttemptTiming;
use crate::tasks::{CategoryStats, StatsByCategory};

/// The three tasks that run in parallel.
const PARTITION_TASKS: [&str; 3] = [
    "process_partition_1",
    "process_partition_2",
    "process_partition_3",
];

/// The whole report.
pub fn render(outcome: &Outcome) -> String {
    let mut out = String::new();
    let run = &outcome.run;
    let _ = writeln!(
        out,
        "Run {} of {} (version {}): {}",
        run.id,
        run.workflow_name,
        run.workflow_version,
        short_name(run.status().as_str_name(), "RUN_STATUS_")
    );
    render_tasks(&mut out, run);
    out.push('\n');
    render_stats(&mut out, &outcome.context);
    out.push('\n');
    render_figures(&mut out, outcome);
    out
}

fn render_tasks(out: &mut String, run: &pb::Run) {
    let succeeded = run
        .tasks
        .iter()
        .filter(|task| task.state() == pb::TaskState::Succeeded)
        .count();
    if succeeded == run.tasks.len() {
        let _ = writeln!(out, "All {succeeded} tasks succeeded.");
        return;
    }
    for task in &run.tasks {
        let _ = write!(
            out,
            "  {:<20} {:<16} attempts: {}",
            task.task_id,
            short_name(task.state().as_str_name(), "TASK_STATE_"),
            task.attempts.len()
        );
        if !task.error.is_empty() {
            let _ = write!(out, "  error: {}", task.error);
        }
        out.push('\n');
    }
}

fn render_stats(out: &mut String, context: &Value) {
    let Some(stats) = context
        .get("final_stats")
        .and_then(|stats| serde_json::from_value::<StatsByCategory>(stats.clone()).ok())
    else {
        let _ = writeln!(out, "The run's context has no final_stats.");
        return;
    };
    let mut rows: Vec<(&String, &CategoryStats)> = stats.iter().collect();
    rows.sort_by_key(|(category, _)| natural_key(category));
    let _ = writeln!(
        out,
        "{:<14} {:>9} {:>12} {:>18}",
        "Category", "Products", "Stock", "Value"
    );
    let mut total = CategoryStats::default();
    let mut total_stock: u64 = 0;
    for (category, row) in rows {
        let _ = writeln!(
            out,
            "{:<14} {:>9} {:>12} {:>18}",
            category,
            grouped(u64::from(row.product_count)),
            grouped(u64::from(row.total_stock)),
            money(row.total_value)
        );
        total.product_count += row.product_count;
        total_stock += u64::from(row.total_stock);
        total.total_value += row.total_value;
    }
    let _ = writeln!(
        out,
        "{:<14} {:>9} {:>12} {:>18}",
        "All",
        grouped(u64::from(total.product_count)),
        grouped(total_stock),
        money(total.total_value)
    );
}

fn render_figures(out: &mut String, outcome: &Outcome) {
    let context = &outcome.context;
    let times: Vec<Option<u64>> = (1..=3)
        .map(|n| {
            context
                .get(format!("processing_time_{n}"))
                .and_then(Value::as_u64)
        })
        .collect();
    let efficiency = context
        .get("parallel_efficiency_percent")
        .and_then(Value::as_f64);
    match (times.as_slice(), efficiency) {
        ([Some(t1), Some(t2), Some(t3)], Some(efficiency)) => {
            let _ = writeln!(
                out,
                "Parallel efficiency (the tutorial's figure, simulated times): \
                 {t1} + {t2} + {t3} = {} ms of processing, the longest {} ms: {efficiency:.1}%",
                t1 + t2 + t3,
                t1.max(t2).max(t3)
            );
        }
        ([Some(_), Some(_), Some(_)], None) => {
            let _ = writeln!(
                out,
                "Parallel efficiency (the tutorial's figure): n/a, no simulated processing time (--no-sleep)"
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "Parallel efficiency: n/a, the partitions did not all finish"
            );
        }
    }

    let server_wall = match (&outcome.run.created_at, &outcome.run.finished_at) {
        (Some(created), Some(finished)) => Some(
            tributary_proto::unix_ms_from_timestamp(finished)
                - tributary_proto::unix_ms_from_timestamp(created),
        ),
        _ => None,
    };
    let _ = write!(out, "Wall clock of the run: ");
    if let Some(milliseconds) = server_wall {
        let _ = write!(
            out,
            "{milliseconds} ms (created to finished, server clock), "
        );
    }
    let _ = writeln!(
        out,
        "{} ms from StartRun until GetRun showed it finished",
        milliseconds(outcome.observed)
    );

    match partition_overlap(&outcome.timings) {
        Some((work, span)) if !span.is_zero() => {
            let _ = writeln!(
                out,
                "Wall-clock parallelism of the partitions: {} ms of processing in {} ms: {:.1}%",
                milliseconds(work),
                milliseconds(span),
                work.as_secs_f64() / span.as_secs_f64() * 100.0
            );
        }
        _ => {
            let _ = writeln!(out, "Wall-clock parallelism of the partitions: n/a");
        }
    }
}

/// The partitions' summed durations and the span from the first start to the
/// last end, from the executor's clock; `None` unless all three succeeded.
pub fn partition_overlap(timings: &[AttemptTiming]) -> Option<(Duration, Duration)> {
    let attempts: Vec<&AttemptTiming> = PARTITION_TASKS
        .iter()
        .map(|task_id| {
            timings
                .iter()
                .rev()
                .find(|timing| timing.task_id == *task_id && timing.succeeded)
        })
        .collect::<Option<_>>()?;
    let first_start = attempts.iter().map(|timing| timing.started).min()?;
    let last_end = attempts.iter().map(|timing| timing.finished).max()?;
    let work = attempts
        .iter()
        .map(|timing| timing.finished - timing.started)
        .sum();
    Some((work, last_end - first_start))
}

fn milliseconds(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

/// `RUN_STATUS_SUCCEEDED` -> `SUCCEEDED`.
fn short_name<'a>(name: &'a str, prefix: &str) -> &'a str {
    name.strip_prefix(prefix).unwrap_or(name)
}

/// Sorts `Category 2` before `Category 10`.
fn natural_key(name: &str) -> (String, u64) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, number) = name.split_at(name.len() - digits);
    (stem.to_owned(), number.parse().unwrap_or(0))
}

/// `1234567` -> `1,234,567`.
fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `1234567.891` -> `1,234,567.89`.
fn money(value: f64) -> String {
    let cents = (value * 100.0).round();
    let sign = if cents < 0.0 { "-" } else { "" };
    let cents = cents.abs() as u64;
    format!("{sign}{}.{:02}", grouped(cents / 100), cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(money(1234567.891), "1,234,567.89");
        assert_eq!(money(0.5), "0.50");
        assert_eq!(money(-12.0), "-12.00");
    }

    #[test]
    fn categories_sort_by_their_number() {
        let mut names = vec!["Category 10", "Category 2", "Category 1", "Other"];
        names.sort_by_key(|name| natural_key(name));
        assert_eq!(names, ["Category 1", "Category 2", "Category 10", "Other"]);
    }
}
