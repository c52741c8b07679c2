//! Prometheus metrics: the counters and histograms the coordinator and the
//! API update with atomics, and the gauges computed at scrape time from a
//! snapshot the coordinator answers between turns. `route` mounts
//! `GET /metrics` (OpenMetrics text) on an axum router.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::dispatch::{CoordinatorHandle, DispatchSnapshot};
use crate::engine::records::{AttemptState, RunStatus, TaskState};

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

/// A histogram updated with atomics only, so that observing from the
/// coordinator takes no lock (the crate's own histogram takes one). Clones
/// share the counts.
#[derive(Debug, Clone)]
pub struct AtomicHistogram {
    bounds: &'static [f64],
    /// One count per bound, plus the overflow (`+Inf`) bucket; not cumulative.
    counts: Arc<[AtomicU64]>,
    /// The sum in microseconds (values are durations).
    sum_micros: Arc<AtomicU64>,
}

impl AtomicHistogram {
    fn new(bounds: &'static [f64]) -> AtomicHistogram {
        AtomicHistogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records one duration.
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The encoder takes each bucket's own count and accumulates them.
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (index, count) in self.counts.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            total += count;
            let bound = self.bounds.get(index).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, count));
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, total, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Latency buckets in seconds, from a fast local turn to a stalled one.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const RUN_ENDS: [RunStatus; 3] = [
    RunStatus::Succeeded,
    RunStatus::Failed,
    RunStatus::Cancelled,
];
const TASK_STATES: [TaskState; 8] = [
    TaskState::Ready,
    TaskState::Assigned,
    TaskState::Running,
    TaskState::Succeeded,
    TaskState::Failed,
    TaskState::Skipped,
    TaskState::Cancelled,
    TaskState::RetryScheduled,
];
const ATTEMPT_ENDS: [AttemptState; 5] = [
    AttemptState::Succeeded,
    AttemptState::Failed,
    AttemptState::TimedOut,
    AttemptState::Lost,
    AttemptState::Cancelled,
];

/// The server's metrics. Counters are created up front for every label
/// value, so updating one is a single atomic add.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    runs_started: Counter,
    runs_finished: Vec<(RunStatus, Counter)>,
    tasks: Vec<(TaskState, Counter)>,
    attempts: Vec<(AttemptState, Counter)>,
    /// From a task becoming READY (or due again) to its `Assign` being sent.
    pub dispatch_latency: AtomicHistogram,
    /// One coordinator turn's commit, retries included.
    pub commit_latency: AtomicHistogram,
    database_errors: Family<Labels, Counter>,
    /// Open `WatchRun` and `WatchEvents` streams.
    pub watchers: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let runs_started = Counter::default();
        registry.register(
            "tributary_runs_started",
            "Runs started (created) by this server",
            runs_started.clone(),
        );
        let runs_finished_family = Family::<Labels, Counter>::default();
        registry.register(
            "tributary_runs_finished",
            "Runs that ended, by final status",
            runs_finished_family.clone(),
        );
        let runs_finished = RUN_ENDS
            .iter()
            .map(|status| {
                let counter = runs_finished_family
                    .get_or_create(&labels(&[("status", status.as_str())]))
                    .clone();
                (*status, counter)
            })
            .collect();
        let tasks_family = Family::<Labels, Counter>::default();
        registry.register(
            "tributary_task_transitions",
            "Tasks entering each state",
            tasks_family.clone(),
        );
        let tasks = TASK_STATES
            .iter()
            .map(|state| {
                let counter = tasks_family
                    .get_or_create(&labels(&[("state", state.as_str())]))
                    .clone();
                (*state, counter)
            })
            .collect();
        let attempts_family = Family::<Labels, Counter>::default();
        registry.register(
            "tributary_attempts",
            "Attempts that ended, by outcome",
            attempts_family.clone(),
        );
        let attempts = ATTEMPT_ENDS
            .iter()
            .map(|state| {
                let counter = attempts_family
                    .get_or_create(&labels(&[("outcome", state.as_str())]))
                    .clone();
                (*state, counter)
            })
            .collect();
        let dispatch_latency = AtomicHistogram::new(LATENCY_BUCKETS);
        registry.register(
            "tributary_dispatch_latency_seconds",
            "From a task becoming ready to its assignment being sent",
            dispatch_latency.clone(),
        );
        let commit_latency = AtomicHistogram::new(LATENCY_BUCKETS);
        registry.register(
            "tributary_commit_latency_seconds",
            "Each coordinator turn's database commit, retries included",
            commit_latency.clone(),
        );
        let database_errors = Family::<Labels, Counter>::default();
        registry.register(
            "tributary_database_errors",
            "Database operations of the coordinator that failed, by operation",
            database_errors.clone(),
        );
        // Present at 0 from the start, so that a rate over them is defined.
        for operation in ["commit", "create_runs"] {
            drop(database_errors.get_or_create(&labels(&[("operation", operation)])));
        }
        let watchers = Gauge::default();
        registry.register(
            "tributary_watchers",
            "Open WatchRun and WatchEvents streams",
            watchers.clone(),
        );
        Metrics {
            registry,
            runs_started,
            runs_finished,
            tasks,
            attempts,
            dispatch_latency,
            commit_latency,
            database_errors,
            watchers,
        }
    }

    pub fn run_started(&self) {
        self.runs_started.inc();
    }

    pub fn run_finished(&self, status: RunStatus) {
        if let Some((_, counter)) = self.runs_finished.iter().find(|(s, _)| *s == status) {
            counter.inc();
        }
    }

    pub fn task_entered(&self, state: TaskState) {
        if let Some((_, counter)) = self.tasks.iter().find(|(s, _)| *s == state) {
            counter.inc();
        }
    }

    /// Counts an attempt's end; states that are not ends are ignored.
    pub fn attempt_ended(&self, state: AttemptState) {
        if let Some((_, counter)) = self.attempts.iter().find(|(s, _)| *s == state) {
            counter.inc();
        }
    }

    /// A failed database operation (`commit`, `create_runs`, ...).
    pub fn database_error(&self, operation: &str) {
        self.database_errors
            .get_or_create(&labels(&[("operation", operation)]))
            .inc();
    }

    /// The OpenMetrics text of every metric, with the gauges of `snapshot`
    /// when the coordinator answered.
    pub fn render(&self, snapshot: Option<&DispatchSnapshot>) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut text, &self.registry);
        if let Some(snapshot) = snapshot {
            let _ = encode_registry(&mut text, &snapshot_registry(snapshot));
        }
        let _ = encode_eof(&mut text);
        text
    }
}

/// The gauges of one dispatch snapshot, in a registry of their own.
fn snapshot_registry(snapshot: &DispatchSnapshot) -> Registry {
    let mut registry = Registry::default();
    let active_runs = Gauge::<i64>::default();
    active_runs.set(snapshot.active_runs as i64);
    registry.register(
        "tributary_active_runs",
        "Runs this server is driving",
        active_runs,
    );
    let queued = Family::<Labels, Gauge>::default();
    for (namespace, count) in &snapshot.queued_runs_by_namespace {
        queued
            .get_or_create(&labels(&[("namespace", namespace)]))
            .set(*count as i64);
    }
    registry.register(
        "tributary_queued_runs",
        "Runs QUEUED for a slot of their concurrency key, by namespace",
        queued,
    );
    let executors = Family::<Labels, Gauge>::default();
    for (namespace, count) in &snapshot.executors_by_namespace {
        executors
            .get_or_create(&labels(&[("namespace", namespace)]))
            .set(*count as i64);
    }
    registry.register(
        "tributary_executors_connected",
        "Connected executors, by namespace",
        executors,
    );
    let handler_executors = Family::<Labels, Gauge>::default();
    let slots = Family::<Labels, Gauge>::default();
    let waiting = Family::<Labels, Gauge>::default();
    let in_flight = Family::<Labels, Gauge>::default();
    for load in &snapshot.handlers {
        let key = [
            ("namespace", load.namespace.as_str()),
            ("handler", load.handler.as_str()),
        ];
        handler_executors
            .get_or_create(&labels(&key))
            .set(load.executors as i64);
        let used = [key[0], key[1], ("state", "used")];
        slots
            .get_or_create(&labels(&used))
            .set(load.slots_used as i64);
        let free = [key[0], key[1], ("state", "free")];
        slots
            .get_or_create(&labels(&free))
            .set(load.slots_free as i64);
        waiting
            .get_or_create(&labels(&key))
            .set(load.ready_waiting as i64);
        in_flight
            .get_or_create(&labels(&key))
            .set(load.attempts_in_flight as i64);
    }
    registry.register(
        "tributary_handler_executors",
        "Connected executors serving each handler",
        handler_executors,
    );
    registry.register(
        "tributary_handler_slots",
        "Attempt slots of the executors serving each handler, used or free",
        slots,
    );
    registry.register(
        "tributary_ready_tasks_waiting",
        "READY tasks not assigned because no executor serving their handler has a free slot (or the handler is at a task's max_in_flight)",
        waiting,
    );
    registry.register(
        "tributary_handler_attempts_in_flight",
        "Attempts of each handler in flight across its executors, which a task's max_in_flight limits",
        in_flight,
    );
    registry
}

/// How long a scrape waits for the coordinator's snapshot; a coordinator
/// stuck on the database must not hang the scrape, which then carries the
/// counters only.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);

/// What `GET /metrics` reads.
#[derive(Clone)]
pub struct MetricsEndpoint {
    pub metrics: Arc<Metrics>,
    pub coordinator: CoordinatorHandle,
}

/// The `/metrics` route, to merge into the server's router (or serve alone
/// on `--metrics-listen`).
pub fn route(endpoint: MetricsEndpoint) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(endpoint)
}

/// Serves `/metrics` alone on `listener` (`--metrics-listen`) until
/// `stopped` turns true.
pub fn serve_alone(
    listener: tokio::net::TcpListener,
    endpoint: MetricsEndpoint,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let serving = axum::serve(listener, route(endpoint)).with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        });
        if let Err(error) = serving.await {
            tracing::error!(%error, "the metrics listener failed");
        }
    })
}

async fn scrape(State(endpoint): State<MetricsEndpoint>) -> impl IntoResponse {
    let snapshot =
        match tokio::time::timeout(SNAPSHOT_TIMEOUT, endpoint.coordinator.snapshot()).await {
            Ok(Ok(snapshot)) => Some(snapshot),
            _ => None,
        };
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        endpoint.metrics.render(snapshot.as_ref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_the_sum_is_in_seconds() {
        let metrics = Metrics::new();
        metrics.dispatch_latency.observe(Duration::from_micros(200));
        metrics.dispatch_latency.observe(Duration::from_millis(20));
        metrics.dispatch_latency.observe(Duration::from_secs(60));
        metrics.run_finished(RunStatus::Succeeded);
        let text = metrics.render(None);
        assert!(
            text.contains("tributary_dispatch_latency_seconds_count 3"),
            "{text}"
        );
        assert!(
            text.contains("tributary_dispatch_latency_seconds_bucket{le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tributary_dispatch_latency_seconds_bucket{le=\"0.025\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("tributary_dispatch_latency_seconds_bucket{le=\"+Inf\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("tributary_dispatch_latency_seconds_sum 60.0202"),
            "{text}"
        );
        assert!(
            text.contains("tributary_runs_finished_total{status=\"succeeded\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
