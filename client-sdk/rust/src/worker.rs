//! The executor runtime: a [`Worker`] holds one `ExecutorService.Connect`
//! stream to the server, runs the attempts it is assigned (up to its
//! capacity at once), heartbeats, delivers cancellations to running tasks,
//! turns panics into failed attempts, and survives lost connections and
//! server restarts: it reconnects with backoff, re-registers with the
//! attempts it still holds, and resends results the server has not
//! acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Endpoint;
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_request::Message as ToServer;
use tributary_proto::v1::connect_response::Message as FromServer;
use tributary_proto::v1::executor_service_client::ExecutorServiceClient;

use crate::attempt::{AttemptInputError, RawValues, run_attempt};
use crate::context::Context;
use crate::error::Error;
use crate::value_cache::{Input, Inputs};
use crate::workflow::{Handler, Task, TaskFuture, Workflow};

/// The cancellation of one attempt, as a task sees it (through
/// [`Context::is_cancelled`] or [`Context::cancellation`]).
///
/// When the server cancels an attempt (its run was cancelled, or it timed
/// out) the worker signals this handle and drops the task's future at its
/// next `.await`; synchronous work (for example in `spawn_blocking`) should
/// poll [`Cancellation::is_cancelled`].
///
/// ```
/// use tributary::{Context, TaskError};
/// async fn crunch(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
///     if let Some(cancellation) = context.cancellation() {
///         tokio::task::spawn_blocking(move || {
///             while !cancellation.is_cancelled() { /* one chunk of work */ break; }
///         }).await.map_err(|e| TaskError::retryable(e.to_string()))?;
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Cancellation {
    reason: watch::Receiver<Option<String>>,
}

impl Cancellation {
    /// Whether the attempt was cancelled.
    ///
    /// ```no_run
    /// # fn f(cancellation: tributary::Cancellation) {
    /// if cancellation.is_cancelled() { return; }
    /// # }
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.reason.borrow().is_some()
    }

    /// The server's reason, once cancelled.
    ///
    /// ```no_run
    /// # fn f(cancellation: tributary::Cancellation) {
    /// println!("{:?}", cancellation.reason());
    /// # }
    /// ```
    pub fn reason(&self) -> Option<String> {
        self.reason.borrow().clone()
    }

    /// Completes when the attempt is cancelled, with the reason.
    ///
    /// ```no_run
    /// # async fn f(cancellation: tributary::Cancellation) {
    /// let reason = cancellation.cancelled().await;
    /// # }
    /// ```
    pub async fn cancelled(&self) -> String {
        let mut reason = self.reason.clone();
        let outcome = reason
            .wait_for(Option::is_some)
            .await
            .map(|reason| reason.clone().unwrap_or_default());
        match outcome {
            Ok(reason) => reason,
            // The attempt is over without a cancellation.
            Err(_) => std::future::pending().await,
        }
    }
}

/// The attempt a task runs in, as a task sees it (through
/// [`Context::attempt`]).
///
/// ```
/// use tributary::{Context, TaskError};
/// async fn flaky(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
///     match context.attempt() {
///         Some(attempt) if attempt.number == 1 => Err("first attempts always fail".into()),
///         _ => Ok(()),
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// The run's id.
    pub run_id: String,
    /// The task's id within the workflow.
    pub task_id: String,
    /// The attempt's id.
    pub attempt_id: String,
    /// 1 for the first attempt, counting retries and reassignments.
    pub number: u32,
    /// The handler name the task was routed by.
    pub handler: String,
    /// The workflow's name.
    pub workflow_name: String,
    /// The W3C `traceparent` of the server's span for this attempt (its
    /// trace is the run's), to parent the task's own spans; empty when the
    /// server exports no traces.
    pub traceparent: String,
    /// The W3C `tracestate` going with `traceparent`; usually empty.
    pub tracestate: String,
    /// For an instance of a mapped task (`task_id` is the mapped task's):
    /// its element's index, also in the input under
    /// [`MAP_INDEX_KEY`](crate::MAP_INDEX_KEY).
    pub map_index: Option<u32>,
}

/// What a worker is doing, for logs and tests (see [`Worker::status`]).
///
/// ```no_run
/// # async fn f(worker: &tributary::Worker) {
/// let status = worker.status().borrow().clone();
/// println!("connected: {}, running: {}", status.connected, status.running);
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStatus {
    /// Whether a stream is open and registered.
    pub connected: bool,
    /// How many times the worker has registered (1 + reconnections).
    pub registrations: u64,
    /// The executor id of the current (or last) registration.
    pub executor_id: String,
    /// Attempts running now.
    pub running: usize,
    /// Results sent (or to be sent) that the server has not acknowledged.
    pub unacknowledged: usize,
}

/// The outcome of [`Worker::shutdown`].
///
/// ```no_run
/// # async fn f(worker: tributary::Worker) {
/// let report = worker.shutdown(std::time::Duration::from_secs(30)).await;
/// assert!(report.drained);
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// True when every attempt finished and every result was acknowledged
    /// before the deadline.
    pub drained: bool,
    /// Attempts cancelled because the deadline passed.
    pub cancelled_attempts: usize,
}

/// Configures and starts a [`Worker`].
///
/// ```no_run
/// # async fn f(workflow: tributary::Workflow) -> Result<(), tributary::Error> {
/// use std::time::Duration;
/// let worker = tributary::Worker::builder("http://127.0.0.1:50051")
///     .namespace("default")
///     .capacity(8)
///     .workflow(&workflow)
///     .handler("billing.charge", |context| Box::pin(async move {
///         context.insert("charged", true)?;
///         Ok(())
///     }))
///     .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(5))
///     .start()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WorkerBuilder {
    url: String,
    namespace: String,
    name: String,
    instance_id: String,
    capacity: u32,
    labels: HashMap<String, String>,
    handlers: BTreeMap<String, Handler>,
    heartbeat_interval: Option<Duration>,
    reconnect_min: Duration,
    reconnect_max: Duration,
    value_cache_bytes: u64,
    connect_options: crate::ConnectOptions,
}

impl WorkerBuilder {
    /// The API key and TLS settings of the connection (`https://` URLs use
    /// TLS). A revoked key's stream is closed by the server, and the worker
    /// keeps trying to reconnect, logging the refusal.
    ///
    /// ```
    /// let builder = tributary::Worker::builder("https://tributary.internal:50051")
    ///     .connect_options(tributary::ConnectOptions::new().api_key("trb_..."));
    /// ```
    pub fn connect_options(mut self, options: crate::ConnectOptions) -> WorkerBuilder {
        self.connect_options = options;
        self
    }

    /// The namespace to serve (default `default`).
    ///
    /// ```
    /// let builder = tributary::Worker::builder("http://localhost:50051").namespace("billing");
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> WorkerBuilder {
        self.namespace = namespace.into();
        self
    }

    /// A human-readable name shown by `ListExecutors` (default: the host
    /// name and process id).
    ///
    /// ```
    /// let builder = tributary::Worker::builder("http://localhost:50051").name("etl-1");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> WorkerBuilder {
        self.name = name.into();
        self
    }

    /// The stable id of this worker process across reconnects (default: a
    /// new UUID).
    ///
    /// ```
    /// let builder = tributary::Worker::builder("http://localhost:50051").instance_id("etl-1");
    /// ```
    pub fn instance_id(mut self, instance_id: impl Into<String>) -> WorkerBuilder {
        self.instance_id = instance_id.into();
        self
    }

    /// How many attempts run at once (default 4; at least 1).
    ///
    /// ```
    /// let builder = tributary::Worker::builder("http://localhost:50051").capacity(16);
    /// ```
    pub fn capacity(mut self, capacity: u32) -> WorkerBuilder {
        self.capacity = capacity.max(1);
        self
    }

    /// A label of this worker, shown by `ListExecutors`; a task that
    /// requires labels ([`Task::required_label`](crate::Task::required_label))
    /// is assigned only to workers that have every one of them.
    ///
    /// ```
    /// let builder = tributary::Worker::builder("http://localhost:50051").label("zone", "eu-1");
    /// ```
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> WorkerBuilder {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sends heartbeats at this interval instead of the one the server asks
    /// for in `Registered` (useful only to test lease handling).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = tributary::Worker::builder("http://localhost:50051")
    ///     .heartbeat_interval(Duration::from_secs(1));
    /// ```
    pub fn heartbeat_interval(mut self, interval: Duration) -> WorkerBuilder {
        self.heartbeat_interval = Some(interval);
        self
    }

    /// The reconnection backoff: starts at `min`, doubles up to `max`, with
    /// jitter (defaults 50 ms and 5 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = tributary::Worker::builder("http://localhost:50051")
    ///     .reconnect_backoff(Duration::from_millis(10), Duration::from_secs(1));
    /// ```
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> WorkerBuilder {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }

    /// How many bytes of context values the worker keeps, per stream, so
    /// that the server can send a value the worker already has (because it
    /// produced or received it earlier in the run) as a reference instead
    /// of again (default 64 MiB; 0 disables it: every attempt receives its
    /// whole input context). Values evicted from this cache and still
    /// needed are fetched from the server.
    ///
    /// ```
    /// let builder = tributary::Worker::builder("http://localhost:50051")
    ///     .value_cache_bytes(256 * 1024 * 1024);
    /// ```
    pub fn value_cache_bytes(mut self, bytes: u64) -> WorkerBuilder {
        self.value_cache_bytes = bytes;
        self
    }

    /// Serves `handler` under the handler name `name`.
    ///
    /// ```
    /// let builder = tributary::Worker::builder("http://localhost:50051")
    ///     .handler("etl.extract", |context| Box::pin(async move {
    ///         context.upsert("rows", 10);
    ///         Ok(())
    ///     }));
    /// ```
    pub fn handler<F>(mut self, name: impl Into<String>, handler: F) -> WorkerBuilder
    where
        F: for<'a> Fn(&'a mut Context<Value>) -> TaskFuture<'a> + Send + Sync + 'static,
    {
        self.handlers
            .insert(name.into(), std::sync::Arc::new(handler));
        self
    }

    /// Serves one task of `workflow` (under its handler name in it).
    ///
    /// ```
    /// # let workflow = tributary::Workflow::new("w");
    /// let task = tributary::Task::new("a", |_c| Box::pin(async { Ok(()) }));
    /// let builder = tributary::Worker::builder("http://localhost:50051").task("w", &task);
    /// ```
    pub fn task(mut self, workflow: &str, task: &Task) -> WorkerBuilder {
        self.handlers
            .insert(task.definition().handler_name(workflow), task.handler());
        self
    }

    /// Serves every task of `workflow`.
    ///
    /// ```
    /// let workflow = tributary::Workflow::new("w")
    ///     .task(tributary::Task::new("a", |_c| Box::pin(async { Ok(()) })));
    /// let builder = tributary::Worker::builder("http://localhost:50051").workflow(&workflow);
    /// ```
    pub fn workflow(mut self, workflow: &Workflow) -> WorkerBuilder {
        self.handlers.extend(workflow.handlers());
        self
    }

    /// Starts the worker in the background. It connects, and keeps
    /// reconnecting, on its own; nothing here waits for the server.
    ///
    /// Handlers run on the current tokio runtime. The connection (the
    /// stream, heartbeats, results) runs on a thread of its own, so that
    /// handlers that keep every thread of the runtime busy with CPU-bound
    /// work cannot stop the heartbeats and lose the worker's lease.
    ///
    /// ```no_run
    /// # async fn f(workflow: tributary::Workflow) -> Result<(), tributary::Error> {
    /// let worker = tributary::Worker::builder("http://127.0.0.1:50051").workflow(&workflow).start()?;
    /// # Ok(()) }
    /// ```
    pub fn start(self) -> Result<Worker, Error> {
        if self.handlers.is_empty() {
            return Err(Error::NoHandlers);
        }
        let endpoint = self.connect_options.endpoint(&self.url)?;
        let authorization = self.connect_options.authorization()?;
        let namespace = AsciiMetadataValue::try_from(self.namespace.as_str())
            .map_err(|_| Error::InvalidNamespace(self.namespace.clone()))?;
        let (control, control_receiver) = mpsc::unbounded_channel();
        let (results, results_receiver) = mpsc::unbounded_channel();
        let (status, status_receiver) = watch::channel(WorkerStatus::default());
        let instance_id = self.instance_id.clone();
        let value_cache_bytes = self.value_cache_bytes;
        let driver = Driver {
            endpoint: endpoint.connect_timeout(Duration::from_secs(5)),
            namespace,
            authorization,
            config: self,
            running: HashMap::new(),
            attempts: JoinSet::new(),
            handlers_runtime: tokio::runtime::Handle::current(),
            unacked: BTreeMap::new(),
            results,
            results_receiver,
            inputs: Inputs::new(value_cache_bytes),
            parked: HashMap::new(),
            control: control_receiver,
            drain: None,
            status,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        };
        let connection = ConnectionThread::start(driver)?;
        Ok(Worker {
            control,
            connection: Some(connection),
            status: status_receiver,
            instance_id,
        })
    }
}

/// The executor runtime: runs task handlers for the server.
///
/// ```no_run
/// use std::time::Duration;
/// use tributary::{Context, TaskError, Worker};
///
/// #[tributary::task(id = "hello")]
/// async fn hello(context: &mut Context<serde_json::Value>) -> Result<(), TaskError> {
///     context.insert("greeting", "hello")?;
///     Ok(())
/// }
///
/// # async fn f() -> Result<(), tributary::Error> {
/// let workflow = tributary::workflow!("greetings", [hello]);
/// let worker = Worker::builder("http://127.0.0.1:50051").workflow(&workflow).start()?;
/// // ... until the process should stop:
/// worker.shutdown(Duration::from_secs(30)).await;
/// # Ok(()) }
/// ```
pub struct Worker {
    control: mpsc::UnboundedSender<Control>,
    connection: Option<ConnectionThread>,
    status: watch::Receiver<WorkerStatus>,
    instance_id: String,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("instance_id", &self.instance_id)
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl Worker {
    /// A builder for a worker connecting to `server_url`
    /// (`http://host:port`).
    ///
    /// ```
    /// let builder = tributary::Worker::builder("http://127.0.0.1:50051");
    /// ```
    pub fn builder(server_url: impl Into<String>) -> WorkerBuilder {
        WorkerBuilder {
            url: server_url.into(),
            namespace: tributary_proto::DEFAULT_NAMESPACE.to_owned(),
            name: default_name(),
            instance_id: uuid::Uuid::now_v7().to_string(),
            capacity: 4,
            labels: HashMap::new(),
            handlers: BTreeMap::new(),
            heartbeat_interval: None,
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            value_cache_bytes: DEFAULT_VALUE_CACHE_BYTES,
            connect_options: crate::ConnectOptions::new(),
        }
    }

    /// The worker's stable instance id.
    ///
    /// ```no_run
    /// # fn f(worker: &tributary::Worker) {
    /// println!("{}", worker.instance_id());
    /// # }
    /// ```
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// A live view of what the worker is doing; `changed()` and
    /// `wait_for(..)` on it wait for transitions.
    ///
    /// ```no_run
    /// # async fn f(worker: &tributary::Worker) {
    /// let mut status = worker.status();
    /// status.wait_for(|status| status.connected).await.unwrap();
    /// # }
    /// ```
    pub fn status(&self) -> watch::Receiver<WorkerStatus> {
        self.status.clone()
    }

    /// Stops gracefully: asks for no more work (`CapacityChanged { 0 }`),
    /// lets running attempts finish and their results be acknowledged, and
    /// cancels whatever still runs when `deadline` has passed.
    ///
    /// ```no_run
    /// # async fn f(worker: tributary::Worker) {
    /// let report = worker.shutdown(std::time::Duration::from_secs(10)).await;
    /// println!("drained: {}", report.drained);
    /// # }
    /// ```
    pub async fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        let (done, report) = oneshot::channel();
        let sent = self.control.send(Control::Shutdown {
            deadline: Instant::now() + deadline,
            done,
        });
        let report = match sent {
            Ok(()) => report.await.unwrap_or_default(),
            Err(_) => ShutdownReport::default(),
        };
        if let Some(connection) = self.connection.take() {
            connection.finished().await;
        }
        report
    }

    /// Stops at once, as a crash would: closes the stream and drops every
    /// running attempt without reporting it. The server re-queues the
    /// attempts. Dropping a `Worker` does the same.
    ///
    /// ```no_run
    /// # async fn f(worker: tributary::Worker) {
    /// worker.abort().await;
    /// # }
    /// ```
    pub async fn abort(mut self) {
        if let Some(connection) = self.connection.take() {
            connection.abort().await;
        }
    }
}

/// The thread that runs a worker's [`Driver`] on a runtime of its own.
struct ConnectionThread {
    /// Sending or dropping it stops the driver at once, as a crash would.
    stop: oneshot::Sender<()>,
    /// Completes when the driver has stopped (its attempts aborted).
    finished: oneshot::Receiver<()>,
}

impl ConnectionThread {
    fn start(driver: Driver) -> Result<ConnectionThread, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::WorkerThread)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (finish, finished) = oneshot::channel();
        std::thread::Builder::new()
            .name("tributary-worker".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    // Either way the driver is dropped here, which aborts
                    // the attempts it still runs.
                    tokio::select! {
                        () = driver.run() => {}
                        _ = stopped => {}
                    }
                });
                let _ = finish.send(());
            })
            .map_err(Error::WorkerThread)?;
        Ok(ConnectionThread { stop, finished })
    }

    async fn finished(self) {
        let ConnectionThread { stop, finished } = self;
        let _ = finished.await;
        drop(stop);
    }

    async fn abort(self) {
        let ConnectionThread { stop, finished } = self;
        let _ = stop.send(());
        let _ = finished.await;
    }
}

/// The message limit assumed until the server states its own (gRPC's usual).
const DEFAULT_MAX_MESSAGE_BYTES: u64 = 4 * 1024 * 1024;

/// The worker's value cache unless configured.
const DEFAULT_VALUE_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// How long a finishing worker waits for the server to close the stream.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

fn default_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
    format!("{host}/{}", std::process::id())
}

enum Control {
    Shutdown {
        deadline: Instant,
        done: oneshot::Sender<ShutdownReport>,
    },
}

struct Drain {
    deadline: Instant,
    done: Option<oneshot::Sender<ShutdownReport>>,
    cancelled: usize,
    deadline_passed: bool,
}

struct Running {
    cancel: watch::Sender<Option<String>>,
}

/// An assigned attempt waiting for values it must fetch before it starts.
struct Parked {
    attempt: Arc<Attempt>,
    run_id: String,
    handler: Option<Handler>,
    reason: watch::Receiver<Option<String>>,
}

/// An attempt's end as its task reports it to the driver.
struct Finished {
    attempt_id: String,
    message: ToServer,
    /// The run and the values the attempt set, to keep in the value cache.
    produced: Option<(String, RawValues)>,
}

/// Why a session (one stream) ended.
enum SessionEnd {
    /// The stream broke or the lease was lost: reconnect.
    Lost,
    /// Shutdown is complete.
    Finished,
}

struct Driver {
    config: WorkerBuilder,
    endpoint: Endpoint,
    namespace: AsciiMetadataValue,
    /// `Bearer <key>`, when the worker has an API key.
    authorization: Option<AsciiMetadataValue>,
    running: HashMap<String, Running>,
    /// Owns the attempt tasks: dropping the driver aborts them all.
    attempts: JoinSet<()>,
    /// The runtime the worker was started on, where handlers run (the
    /// driver runs on its own thread).
    handlers_runtime: tokio::runtime::Handle,
    /// Results not acknowledged yet, by attempt id (ordered, so resends are
    /// deterministic).
    unacked: BTreeMap<String, ToServer>,
    results: mpsc::UnboundedSender<Finished>,
    results_receiver: mpsc::UnboundedReceiver<Finished>,
    /// The value cache and the attempts waiting for fetched values.
    inputs: Inputs,
    /// Attempts assigned but not started until their values arrive (also
    /// in `running`).
    parked: HashMap<String, Parked>,
    control: mpsc::UnboundedReceiver<Control>,
    drain: Option<Drain>,
    status: watch::Sender<WorkerStatus>,
    /// The largest message the server accepts (from `Registered`).
    max_message_bytes: u64,
}

impl Driver {
    async fn run(mut self) {
        let mut backoff = self.config.reconnect_min;
        loop {
            if self.drain_complete() {
                self.finish();
                return;
            }
            match self.session(&mut backoff).await {
                SessionEnd::Finished => {
                    self.finish();
                    return;
                }
                SessionEnd::Lost => {}
            }
            self.publish(|status| status.connected = false);
            // Wait before reconnecting, still collecting results and
            // handling shutdown meanwhile.
            let jitter = 0.5 + fastrand::f64() * 0.5;
            let wait = tokio::time::sleep(backoff.mul_f64(jitter));
            tokio::pin!(wait);
            backoff = (backoff * 2).min(self.config.reconnect_max);
            loop {
                if self.drain_complete() {
                    self.finish();
                    return;
                }
                let drain_deadline = self.drain_deadline();
                tokio::select! {
                    () = &mut wait => break,
                    Some(finished) = self.results_receiver.recv() => {
                        self.record_result(finished);
                    }
                    Some(control) = self.control.recv() => self.handle_control(control, None),
                    () = sleep_until(drain_deadline) => self.deadline_passed(),
                }
            }
        }
    }

    /// One stream: connect, register, serve until it breaks.
    async fn session(&mut self, backoff: &mut Duration) -> SessionEnd {
        let Ok(channel) = self.endpoint.connect().await else {
            return SessionEnd::Lost;
        };
        let (outbound, requests) = mpsc::unbounded_channel::<pb::ConnectRequest>();
        let mut held: Vec<String> = self.running.keys().cloned().collect();
        held.extend(self.unacked.keys().cloned());
        held.sort();
        held.dedup();
        let register = pb::Register {
            name: self.config.name.clone(),
            instance_id: self.config.instance_id.clone(),
            handlers: self.config.handlers.keys().cloned().collect(),
            max_concurrent_attempts: self.config.capacity,
            labels: self.config.labels.clone(),
            held_attempt_ids: held,
            value_cache_bytes: self.config.value_cache_bytes,
        };
        let _ = outbound.send(request(ToServer::Register(register)));
        let mut call = tonic::Request::new(UnboundedReceiverStream::new(requests));
        call.metadata_mut().insert(
            tributary_proto::NAMESPACE_METADATA_KEY,
            self.namespace.clone(),
        );
        if let Some(authorization) = &self.authorization {
            call.metadata_mut()
                .insert("authorization", authorization.clone());
        }
        let mut client = ExecutorServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let mut responses = match client.connect(call).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                tracing::warn!(%status, "the server refused the executor stream");
                return SessionEnd::Lost;
            }
        };
        // The first message must be Registered.
        let registered = loop {
            let drain_deadline = self.drain_deadline();
            tokio::select! {
                message = responses.message() => match message {
                    Ok(Some(pb::ConnectResponse { message: Some(FromServer::Registered(registered)) })) => break registered,
                    Ok(Some(other)) => {
                        tracing::warn!(?other, "expected Registered first");
                        return SessionEnd::Lost;
                    }
                    Ok(None) | Err(_) => return SessionEnd::Lost,
                },
                Some(finished) = self.results_receiver.recv() => {
                    self.record_result(finished);
                }
                Some(control) = self.control.recv() => self.handle_control(control, None),
                () = sleep_until(drain_deadline) => self.deadline_passed(),
            }
        };
        *backoff = self.config.reconnect_min;
        self.publish(|status| {
            status.connected = true;
            status.registrations += 1;
            status.executor_id = registered.executor_id.clone();
        });
        tracing::debug!(executor_id = %registered.executor_id, "registered");
        if self.drain.is_some() {
            let _ = outbound.send(capacity_zero());
        }
        // Resend what the server has not acknowledged, and ask again for
        // the values parked attempts wait for.
        for message in self.unacked.values() {
            let _ = outbound.send(request(message.clone()));
        }
        for fetch in self.inputs.new_stream() {
            let _ = outbound.send(request(ToServer::FetchValues(fetch)));
        }
        let interval = self
            .config
            .heartbeat_interval
            .unwrap_or(Duration::from_millis(
                registered.heartbeat_interval_ms.max(1),
            ));
        let lease = Duration::from_millis(registered.lease_timeout_ms.max(1));
        if registered.max_message_bytes > 0 {
            self.max_message_bytes = registered.max_message_bytes;
        }
        let mut heartbeat = tokio::time::interval_at(Instant::now() + interval, interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_ack = Instant::now();
        loop {
            if self.drain_complete() {
                // End the request stream cleanly, so that what was queued
                // (the last results, CapacityChanged) is delivered, and give
                // the server a moment to close its side.
                drop(outbound);
                let _ = tokio::time::timeout(CLOSE_GRACE, async {
                    while let Ok(Some(_)) = responses.message().await {}
                })
                .await;
                return SessionEnd::Finished;
            }
            let drain_deadline = self.drain_deadline();
            tokio::select! {
                message = responses.message() => match message {
                    Ok(Some(pb::ConnectResponse { message: Some(message) })) => {
                        match message {
                            FromServer::HeartbeatAck(_) => last_ack = Instant::now(),
                            other => self.handle_message(other, &outbound),
                        }
                    }
                    Ok(Some(pb::ConnectResponse { message: None })) => {}
                    Ok(None) | Err(_) => return SessionEnd::Lost,
                },
                _ = heartbeat.tick() => {
                    if last_ack.elapsed() > lease {
                        tracing::warn!("no heartbeat acknowledgement within the lease; cancelling attempts and reconnecting");
                        self.cancel_all("the worker lost its lease on the server");
                        return SessionEnd::Lost;
                    }
                    let _ = outbound.send(request(ToServer::Heartbeat(pb::Heartbeat {})));
                }
                Some(finished) = self.results_receiver.recv() => {
                    let message = self.record_result(finished);
                    let _ = outbound.send(request(message));
                }
                Some(control) = self.control.recv() => self.handle_control(control, Some(&outbound)),
                () = sleep_until(drain_deadline) => self.deadline_passed(),
            }
        }
    }

    fn handle_message(
        &mut self,
        message: FromServer,
        outbound: &mpsc::UnboundedSender<pb::ConnectRequest>,
    ) {
        match message {
            FromServer::Assign(assign) => self.start_attempt(assign, outbound),
            FromServer::Cancel(cancel) => {
                if let Some(running) = self.running.get(&cancel.attempt_id) {
                    tracing::debug!(attempt_id = %cancel.attempt_id, reason = %cancel.reason, "cancelling");
                    running.cancel.send_replace(Some(cancel.reason));
                }
            }
            FromServer::ResultAck(ack) => {
                self.unacked.remove(&ack.attempt_id);
                self.publish_counts();
            }
            FromServer::Values(values) => {
                if let Some((attempt_id, input)) = self.inputs.values_arrived(values)
                    && let Some(parked) = self.parked.remove(&attempt_id)
                {
                    let input = input.map_err(AttemptInputError::Unavailable);
                    self.spawn_attempt(attempt_id, parked, input, outbound);
                }
            }
            FromServer::ForgetRun(forget) => self.inputs.forget_run(&forget.run_id),
            FromServer::Registered(_) | FromServer::HeartbeatAck(_) => {}
        }
    }

    fn start_attempt(
        &mut self,
        mut assign: pb::Assign,
        outbound: &mpsc::UnboundedSender<pb::ConnectRequest>,
    ) {
        let attempt_id = assign.attempt_id.clone();
        if self.running.contains_key(&attempt_id) || self.unacked.contains_key(&attempt_id) {
            // Already ours (a reclaimed attempt); never run it twice.
            return;
        }
        let (cancel, reason) = watch::channel(None);
        self.running.insert(attempt_id.clone(), Running { cancel });
        let parked = Parked {
            attempt: Arc::new(Attempt {
                run_id: assign.run_id.clone(),
                task_id: assign.task_id.clone(),
                attempt_id: assign.attempt_id.clone(),
                number: assign.attempt_number,
                handler: assign.handler.clone(),
                workflow_name: assign.workflow_name.clone(),
                traceparent: assign.traceparent.clone(),
                tracestate: assign.tracestate.clone(),
                map_index: assign.map_index,
            }),
            run_id: assign.run_id.clone(),
            handler: self.config.handlers.get(&assign.handler).cloned(),
            reason,
        };
        match self.inputs.resolve(&mut assign) {
            Input::Ready(context) => {
                let context = context.map_err(AttemptInputError::Invalid);
                self.spawn_attempt(attempt_id, parked, context, outbound);
            }
            Input::Fetch(fetch) => {
                self.parked.insert(attempt_id, parked);
                let _ = outbound.send(request(ToServer::FetchValues(fetch)));
            }
        }
        self.publish_counts();
    }

    fn spawn_attempt(
        &mut self,
        attempt_id: String,
        parked: Parked,
        context: Result<Context<Value>, AttemptInputError>,
        outbound: &mpsc::UnboundedSender<pb::ConnectRequest>,
    ) {
        let cancellation = Cancellation {
            reason: parked.reason,
        };
        let attempt = parked.attempt;
        let context = context.map(|mut context| {
            context.set_attempt(attempt);
            context
        });
        let _ = outbound.send(request(ToServer::Started(pb::Started {
            attempt_id: attempt_id.clone(),
        })));
        let results = self.results.clone();
        let keep_values = self.inputs.is_caching().then_some(parked.run_id);
        self.attempts.spawn_on(
            async move {
                let (message, values) = run_attempt(
                    &attempt_id,
                    parked.handler,
                    context,
                    cancellation,
                    keep_values.is_some(),
                )
                .await;
                let _ = results.send(Finished {
                    attempt_id,
                    message,
                    produced: keep_values.zip(values),
                });
            },
            &self.handlers_runtime,
        );
    }

    /// Keeps a result until it is acknowledged, and returns it as it is to
    /// be sent. The values it set are kept first: the server may name them
    /// in an `Assign` as soon as it has the result.
    fn record_result(&mut self, finished: Finished) -> ToServer {
        let Finished {
            attempt_id,
            message,
            produced,
        } = finished;
        // Reap finished attempt tasks so the set does not grow.
        while self.attempts.try_join_next().is_some() {}
        let message = fit_message(message, self.max_message_bytes);
        if let (Some((run_id, values)), ToServer::Completed(_)) = (produced, &message) {
            self.inputs.produced(&run_id, &attempt_id, values);
        }
        self.running.remove(&attempt_id);
        self.unacked.insert(attempt_id, message.clone());
        self.publish_counts();
        message
    }

    fn handle_control(
        &mut self,
        control: Control,
        outbound: Option<&mpsc::UnboundedSender<pb::ConnectRequest>>,
    ) {
        match control {
            Control::Shutdown { deadline, done } => {
                self.drain = Some(Drain {
                    deadline,
                    done: Some(done),
                    cancelled: 0,
                    deadline_passed: false,
                });
                if let Some(outbound) = outbound {
                    let _ = outbound.send(capacity_zero());
                }
            }
        }
    }

    fn drain_deadline(&self) -> Option<Instant> {
        self.drain
            .as_ref()
            .filter(|drain| !drain.deadline_passed)
            .map(|drain| drain.deadline)
    }

    fn deadline_passed(&mut self) {
        let count = self.running.len();
        self.cancel_all("the worker is shutting down");
        if let Some(drain) = &mut self.drain {
            drain.deadline_passed = true;
            drain.cancelled += count;
        }
    }

    /// Shutdown is complete once nothing runs and every result is
    /// acknowledged, or, after the deadline, once nothing runs.
    fn drain_complete(&self) -> bool {
        match &self.drain {
            Some(drain) => {
                self.running.is_empty() && (self.unacked.is_empty() || drain.deadline_passed)
            }
            None => false,
        }
    }

    fn finish(&mut self) {
        self.attempts.abort_all();
        if let Some(mut drain) = self.drain.take()
            && let Some(done) = drain.done.take()
        {
            let _ = done.send(ShutdownReport {
                drained: !drain.deadline_passed,
                cancelled_attempts: drain.cancelled,
            });
        }
        self.publish(|status| status.connected = false);
    }

    fn cancel_all(&mut self, reason: &str) {
        for running in self.running.values() {
            running.cancel.send_replace(Some(reason.to_owned()));
        }
    }

    fn publish_counts(&self) {
        let running = self.running.len();
        let unacknowledged = self.unacked.len();
        self.publish(|status| {
            status.running = running;
            status.unacknowledged = unacknowledged;
        });
    }

    fn publish(&self, change: impl FnOnce(&mut WorkerStatus)) {
        self.status.send_if_modified(|status| {
            let before = status.clone();
            change(status);
            *status != before
        });
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn request(message: ToServer) -> pb::ConnectRequest {
    pb::ConnectRequest {
        message: Some(message),
    }
}

/// A result too large for the server would break the stream on every
/// resend; it becomes a non-retryable failure that says by how much.
fn fit_message(message: ToServer, max_message_bytes: u64) -> ToServer {
    use prost::Message as _;
    let bytes = request(message.clone()).encoded_len() as u64;
    match message {
        ToServer::Completed(completed) if bytes > max_message_bytes => {
            ToServer::Failed(pb::Failed {
                attempt_id: completed.attempt_id,
                message: format!(
                    "the task's result is {bytes} bytes, over the server's message limit of {max_message_bytes} bytes by {}",
                    bytes - max_message_bytes
                ),
                non_retryable: true,
            })
        }
        ToServer::Failed(mut failed) if bytes > max_message_bytes => {
            // Keep the start of an enormous error message.
            let keep = (max_message_bytes as usize / 2).min(failed.message.len());
            let mut cut = keep;
            while !failed.message.is_char_boundary(cut) {
                cut -= 1;
            }
            failed.message.truncate(cut);
            ToServer::Failed(failed)
        }
        other => other,
    }
}

fn capacity_zero() -> pb::ConnectRequest {
    request(ToServer::CapacityChanged(pb::CapacityChanged {
        max_concurrent_attempts: 0,
    }))
}
