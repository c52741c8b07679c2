//! The scenarios: which workflow, how many runs, and what else is connected.
//! Every scenario gets a fresh database and a fresh server process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tributary::{Client, Task, Worker, Workflow};
use tributary_proto::v1 as pb;
use tributary_proto::v1::executor_service_client::ExecutorServiceClient;
use tributary_proto::v1::run_service_client::RunServiceClient;

use crate::BenchError;
use crate::database::{BenchDatabase, DatabaseKind};
use crate::report::{ContextTraffic, ExecutorCost, ScenarioResult};
use crate::server_process::{ServerProcess, process_cpu_time};
use crate::timeline::{Percentiles, RUN_KEY, Timeline, millis, timed};

/// `StartRun` calls in flight at once when a scenario starts many runs: as
/// many clients starting runs at the same moment. More only lengthens the
/// queue (measured: 512 gave fewer tasks/s and 3x the memory).
const START_CONCURRENCY: usize = 32;

/// How long the idle executors are watched for their CPU cost.
const IDLE_WINDOW: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// One run of `length` no-op tasks, each depending on the previous.
    Chain { length: usize },
    /// One run: a root, `width` no-op siblings depending on it, and one
    /// task depending on all of them.
    FanOut { width: usize },
    /// `runs` concurrent runs of a four-task diamond (a -> b, c -> d).
    Diamonds { runs: usize },
    /// `runs` runs, one after the other, of the seed workflow without its
    /// simulated sleeps, served by `workers` workers (each its own
    /// connection).
    Seed { runs: usize, workers: usize },
    /// `idle` executors connected (and heartbeating) but never given work,
    /// then a chain of `length` on one more.
    Executors { idle: usize, length: usize },
    /// One run: a root writing an array of `width` numbers, a task mapped
    /// over it (one instance per element, each writing its output), and
    /// one task reading the gathered array: the fan-out of `FanOut` made
    /// at run time.
    Map { width: usize },
}

impl Scenario {
    pub fn label(&self) -> String {
        match self {
            Scenario::Chain { length } => format!("chain {length}"),
            Scenario::FanOut { width } => format!("fan-out {width}"),
            Scenario::Diamonds { runs } => format!("diamonds x{runs}"),
            Scenario::Seed { runs, workers: 1 } => format!("seed x{runs}"),
            Scenario::Seed { runs, workers } => format!("seed x{runs}, {workers} workers"),
            Scenario::Executors { idle, length } => format!("{idle} idle + chain {length}"),
            Scenario::Map { width } => format!("map {width}"),
        }
    }

    /// Instances of mapped tasks per run: units that run without being
    /// tasks of the workflow.
    fn instances(&self) -> usize {
        match *self {
            Scenario::Map { width } => width,
            _ => 0,
        }
    }

    fn workflow(&self) -> Workflow {
        match *self {
            Scenario::Chain { length } | Scenario::Executors { length, .. } => {
                let mut workflow = Workflow::new("bench_chain");
                for index in 0..length {
                    let mut task = noop(&format!("t{index}"));
                    if index > 0 {
                        task = task.dependencies([format!("t{}", index - 1)]);
                    }
                    workflow = workflow.task(task);
                }
                workflow
            }
            Scenario::FanOut { width } => {
                let siblings: Vec<String> = (0..width).map(|index| format!("s{index}")).collect();
                let mut workflow = Workflow::new("bench_fan_out").task(noop("root"));
                for sibling in &siblings {
                    workflow = workflow.task(noop(sibling).dependencies(["root"]));
                }
                workflow.task(noop("join").dependencies(siblings))
            }
            Scenario::Diamonds { .. } => Workflow::new("bench_diamond")
                .task(noop("a"))
                .task(noop("b").dependencies(["a"]))
                .task(noop("c").dependencies(["a"]))
                .task(noop("d").dependencies(["b", "c"])),
            Scenario::Seed { .. } => crate::seed::workflow_without_sleeps(),
            Scenario::Map { width } => Workflow::new("bench_map")
                .task(Task::new("root", move |context| {
                    Box::pin(async move {
                        context.insert("items", (0..width).collect::<Vec<usize>>())?;
                        Ok(())
                    })
                }))
                .task(
                    Task::new("each", |context| {
                        Box::pin(async move {
                            let index: u64 = context.get(tributary::MAP_INDEX_KEY)?;
                            context.insert("outputs", index)?;
                            Ok(())
                        })
                    })
                    .dependencies(["root"])
                    .map_over("items")
                    .map_output("outputs"),
                )
                .task(noop("join").dependencies(["each"])),
        }
    }

    fn runs(&self) -> usize {
        match *self {
            Scenario::Diamonds { runs } | Scenario::Seed { runs, .. } => runs,
            Scenario::Chain { .. }
            | Scenario::FanOut { .. }
            | Scenario::Executors { .. }
            | Scenario::Map { .. } => 1,
        }
    }

    /// Runs started at once (the seed's runs go one after the other: its
    /// figure is the wall time of one run).
    fn concurrent(&self) -> bool {
        !matches!(self, Scenario::Seed { .. })
    }

    pub async fn run(
        &self,
        kind: DatabaseKind,
        postgres_url: Option<&str>,
        workers: &WorkerSettings,
    ) -> Result<ScenarioResult, BenchError> {
        let database = BenchDatabase::create(kind, postgres_url).await?;
        let outcome = self.run_on(&database, kind, workers).await;
        database.drop_database().await;
        outcome
    }

    async fn run_on(
        &self,
        database: &BenchDatabase,
        kind: DatabaseKind,
        workers: &WorkerSettings,
    ) -> Result<ScenarioResult, BenchError> {
        let durability = database.durability().await?;
        let server = ServerProcess::start(database.url()).await?;
        let outcome = self.measure(&server, kind, durability, workers).await;
        server.stop().await;
        let mut result = outcome?;
        if let (Scenario::Seed { runs, .. }, Some(traffic)) =
            (self, result.context_traffic.as_mut())
        {
            // The stored deltas are the results' set_json as the workers
            // sent it (keys re-sorted, values verbatim).
            traffic.result_bytes_per_run = database.result_bytes().await? as f64 / *runs as f64;
        }
        Ok(result)
    }

    async fn measure(
        &self,
        server: &ServerProcess,
        kind: DatabaseKind,
        durability: String,
        settings: &WorkerSettings,
    ) -> Result<ScenarioResult, BenchError> {
        let workflow = self.workflow();
        // A mapped task runs nothing itself; its instances do.
        let mapped = workflow
            .tasks()
            .iter()
            .filter(|task| !task.definition().map_over.is_empty())
            .count();
        let tasks_per_run = workflow.tasks().len() - mapped + self.instances();
        let timeline = Timeline::new(self.runs(), workflow.tasks().len() + self.instances());
        let (workflow, dependencies) = timed(&workflow, &timeline);
        let client = Client::connect(server.url()).await?;
        client.register_workflow(&workflow).await?;
        let worker_count = match *self {
            Scenario::Seed { workers, .. } => workers.max(1),
            _ => 1,
        };
        let mut workers = Vec::with_capacity(worker_count);
        for index in 0..worker_count {
            workers.push(
                connected(
                    Worker::builder(server.url())
                        .name(format!("bench-{index}"))
                        .capacity(settings.capacity)
                        .value_cache_bytes(settings.value_cache_bytes)
                        .workflow(&workflow),
                )
                .await?,
            );
        }
        let executor_cost = match *self {
            Scenario::Executors { idle, .. } => Some(connect_idle(server, idle).await?),
            _ => None,
        };

        let mut finishes = watch_finishes(server.url(), workflow.name()).await?;
        let rss_start = server.rss_bytes();
        let cpu_start = server.cpu_time();
        let client_cpu_start = process_cpu_time("self");
        let started = Instant::now();
        let mut rss_by_quarter = Vec::new();
        let failed = drive(
            &client,
            server,
            &mut rss_by_quarter,
            &mut finishes,
            workflow.name(),
            self.runs(),
            self.concurrent(),
        )
        .await?;
        let wall = started.elapsed();
        let cpu = server.cpu_time().saturating_sub(cpu_start);
        let client_cpu = process_cpu_time("self").saturating_sub(client_cpu_start);
        let rss_end = server.rss_bytes();
        let context_traffic = match self {
            Scenario::Seed { runs, .. } => Some(context_traffic(server, &workers, *runs).await?),
            _ => None,
        };

        let (idle_workers, executor_cost) = match executor_cost {
            Some((workers, cost)) => (workers, Some(cost)),
            None => (Vec::new(), None),
        };
        for idle in idle_workers {
            idle.abort().await;
        }
        for worker in workers {
            worker.shutdown(Duration::from_secs(10)).await;
        }

        let runs = self.runs();
        let tasks = runs * tasks_per_run;
        let seconds = wall.as_secs_f64().max(f64::EPSILON);
        Ok(ScenarioResult {
            scenario: self.label(),
            database: kind,
            durability,
            runs,
            tasks,
            failed_runs: failed,
            wall_ms: millis(wall),
            run_wall_ms: (!self.concurrent()).then(|| millis(wall) / runs.max(1) as f64),
            tasks_per_second: tasks as f64 / seconds,
            runs_per_second: runs as f64 / seconds,
            dispatch: Percentiles::of(timeline.dispatch_latencies(&dependencies)),
            server_cpu_ms: millis(cpu),
            server_cpu_percent: 100.0 * cpu.as_secs_f64() / seconds,
            client_cpu_percent: 100.0 * client_cpu.as_secs_f64() / seconds,
            rss_start_mib: mib(rss_start),
            rss_end_mib: mib(rss_end),
            rss_peak_mib: mib(server.peak_rss_bytes()),
            rss_by_quarter_mib: rss_by_quarter,
            executor_cost,
            context_traffic,
        })
    }
}

/// How the benchmark's workers are configured.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Attempts each worker runs at once.
    pub capacity: u32,
    /// Each worker's value cache (0: whole contexts in every Assign).
    pub value_cache_bytes: u64,
}

/// What the server counted for the workers' connections, per run.
async fn context_traffic(
    server: &ServerProcess,
    workers: &[Worker],
    runs: usize,
) -> Result<ContextTraffic, BenchError> {
    let channel = tonic::transport::Endpoint::from_shared(server.url().to_owned())
        .map_err(|error| BenchError::Server(error.to_string()))?
        .connect()
        .await
        .map_err(tributary::Error::from)?;
    let listed = ExecutorServiceClient::new(channel)
        .list_executors(pb::ListExecutorsRequest {})
        .await
        .map_err(tributary::Error::from)?
        .into_inner()
        .executors;
    let runs = runs.max(1) as f64;
    let mut traffic = ContextTraffic::default();
    for worker in workers {
        let executor_id = worker.status().borrow().executor_id.clone();
        let info = listed
            .iter()
            .find(|info| info.executor_id == executor_id)
            .ok_or_else(|| BenchError::Server(format!("worker {executor_id} is not listed")))?;
        traffic
            .sent_per_run_by_worker
            .push(info.context_bytes_sent as f64 / runs);
        traffic.sent_per_run += info.context_bytes_sent as f64 / runs;
        traffic.references_per_run += info.values_sent_by_reference as f64 / runs;
    }
    Ok(traffic)
}

fn noop(id: &str) -> Task {
    Task::new(id, |_context| Box::pin(async { Ok(()) }))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Starts a worker and waits until the server has registered it.
async fn connected(builder: tributary::WorkerBuilder) -> Result<Worker, BenchError> {
    let worker = builder.start()?;
    let mut status = worker.status();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|status| status.connected),
    )
    .await
    .map_err(|_| BenchError::Server("a worker did not connect within 30 s".into()))?
    .map_err(|_| BenchError::Server("a worker stopped before connecting".into()))?;
    Ok(worker)
}

/// Connects `idle` executors that serve a handler no run uses, and measures
/// what they cost the server: memory once connected, CPU while idle.
async fn connect_idle(
    server: &ServerProcess,
    idle: usize,
) -> Result<(Vec<Worker>, ExecutorCost), BenchError> {
    let rss_before = server.rss_bytes();
    let mut workers = Vec::with_capacity(idle);
    for index in 0..idle {
        workers.push(
            connected(
                Worker::builder(server.url())
                    .name(format!("idle-{index}"))
                    .capacity(1)
                    .handler("bench_idle.never", |_context| Box::pin(async { Ok(()) })),
            )
            .await?,
        );
    }
    let rss_after = server.rss_bytes();
    let cpu_start = server.cpu_time();
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle_cpu = server.cpu_time().saturating_sub(cpu_start);
    let per_executor = rss_after.saturating_sub(rss_before) / (idle.max(1) as u64);
    Ok((
        workers,
        ExecutorCost {
            idle_executors: idle,
            rss_per_executor_kib: per_executor as f64 / 1024.0,
            idle_cpu_percent: 100.0 * idle_cpu.as_secs_f64() / IDLE_WINDOW.as_secs_f64(),
        },
    ))
}

type Finishes = tonic::Streaming<pb::WatchEventsResponse>;

/// The stream of `workflow`'s RUN_FINISHED events, opened before any run
/// starts so that its setup is not timed.
async fn watch_finishes(url: &str, workflow: &str) -> Result<Finishes, BenchError> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|error| BenchError::Server(error.to_string()))?
        .connect()
        .await
        .map_err(tributary::Error::from)?;
    Ok(RunServiceClient::new(channel)
        .watch_events(pb::WatchEventsRequest {
            after_cursor: 0,
            workflow_names: vec![workflow.to_owned()],
            run_ids: Vec::new(),
            from_now: false,
            types: vec![pb::RunEventType::RunFinished.into()],
        })
        .await
        .map_err(tributary::Error::from)?
        .into_inner())
}

/// Starts `runs` runs of `workflow` (all at once, or one after the other)
/// and waits until every one has finished; returns how many did not
/// succeed.
async fn drive(
    client: &Client,
    server: &ServerProcess,
    rss_by_quarter: &mut Vec<f64>,
    finishes: &mut Finishes,
    workflow: &str,
    runs: usize,
    concurrent: bool,
) -> Result<usize, BenchError> {
    let mut failed = 0;
    if concurrent {
        let permits = Arc::new(Semaphore::new(START_CONCURRENCY));
        let mut starts = JoinSet::new();
        for run in 0..runs {
            let (client, workflow, permits) =
                (client.clone(), workflow.to_owned(), permits.clone());
            starts.spawn(async move {
                let _permit = permits.acquire_owned().await;
                client.start_run(&workflow, json!({ RUN_KEY: run })).await
            });
        }
        while let Some(started) = starts.join_next().await {
            started.map_err(|error| BenchError::Server(error.to_string()))??;
        }
        for finished in 1..=runs {
            failed += usize::from(!next_finish_succeeded(finishes).await?);
            // The server's memory as the runs flow through: it should stay
            // flat, not grow with the runs done.
            if runs >= 4 && (finished * 4) % runs < 4 && rss_by_quarter.len() < 4 {
                rss_by_quarter.push(mib(server.rss_bytes()));
            }
        }
    } else {
        for run in 0..runs {
            client.start_run(workflow, json!({ RUN_KEY: run })).await?;
            failed += usize::from(!next_finish_succeeded(finishes).await?);
        }
    }
    Ok(failed)
}

async fn next_finish_succeeded(finishes: &mut Finishes) -> Result<bool, BenchError> {
    let response = finishes
        .next()
        .await
        .ok_or_else(|| BenchError::Server("the event stream ended".into()))?
        .map_err(tributary::Error::from)?;
    let event = response
        .event
        .ok_or_else(|| BenchError::Server("an event response without an event".into()))?;
    Ok(event.run_status() == pb::RunStatus::Succeeded)
}
