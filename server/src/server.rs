//! Starting and stopping the gRPC server: connects the store (running its
//! migrations), mounts every service behind one tower stack, and reports
//! health SERVING only once all of that is done.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tower::Layer;
use tower_http::trace::TraceLayer;
use tracing::Span;
use tributary_proto::v1::executor_service_server::ExecutorServiceServer;
use tributary_proto::v1::run_service_server::RunServiceServer;
use tributary_proto::v1::schedule_service_server::ScheduleServiceServer;
use tributary_proto::v1::workflow_service_server::WorkflowServiceServer;

use tonic::transport::ServerTlsConfig;
use tributary_proto::v1::key_service_server::KeyServiceServer;

use crate::accept::AcceptBackoff;
use crate::api::call_limits::UnaryConcurrencyLimitLayer;
use crate::api::executor::{ExecutorApi, ProtocolSettings};
use crate::api::executor_input::RegisterLimits;
use crate::api::run::RunApi;
use crate::api::schedule::ScheduleApi;
use crate::api::wire_status::ReadErrorStatusLayer;
use crate::api::workflow::WorkflowApi;
use crate::auth::service::KeyApi;
use crate::auth::{AuthLayer, KeyRing};
use crate::config::ServeConfig;
use crate::dispatch::{Coordinator, CoordinatorHandle, DispatchSettings};
use crate::engine::records::EventRecord;
use crate::engine::run::RunSettings;
use crate::events::EventFeed;
use crate::retention::{self, RetentionSettings};
use crate::schedules::{Scheduler, SchedulerSettings, SchedulerWake};
use crate::store::{self, Store, StoreError};
use crate::telemetry::metrics::{self, MetricsEndpoint};
use crate::telemetry::traces::{self, RunTracer, TraceSetupError};
use crate::telemetry::{Metrics, Observer};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Web(#[from] crate::web::WebConfigError),
    #[error("{0}")]
    Security(#[from] crate::security::SecurityError),
    #[error("{0}")]
    Keys(#[from] crate::auth::KeyRingError),
    #[error("{0}")]
    TlsFile(#[from] crate::tls::TlsFileError),
    #[error("{0}")]
    Trace(#[from] TraceSetupError),
}

/// A server running in the background of this process.
pub struct RunningServer {
    local_addr: SocketAddr,
    tls: bool,
    metrics_addr: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl RunningServer {
    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the separate `/metrics` listener (`--metrics-listen`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The URL clients connect to: `https://` when the server speaks TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Stops accepting calls, lets running calls finish, closes the store.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.task.await {
            Ok(result) => result,
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
        }
    }

    /// Waits until the server stops on its own (it only does on error).
    pub async fn wait(&mut self) -> Result<(), ServeError> {
        match (&mut self.task).await {
            Ok(result) => result,
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
        }
    }
}

/// Connects the store, binds the listener and starts serving in a
/// background task.
pub async fn start(config: &ServeConfig) -> Result<RunningServer, ServeError> {
    let cors = crate::web::cors_layer(&config.cors_allow_origins)?;
    let store = store::connect(&config.database_url).await?;
    let bootstrap_key = config.security.bootstrap_key()?;
    let keys = Arc::new(
        KeyRing::load(
            store.clone(),
            bootstrap_key.as_ref().map(|key| key.expose()),
        )
        .await?,
    );
    config.security.check_exposure(
        config.listen,
        keys.has_usable_key(crate::clock::now_unix_ms()),
    )?;
    let tls = crate::tls::server_tls_config(&config.security)?;
    if let Some(tls) = &tls {
        // Certificates that do not parse fail here, before "serving".
        Server::builder().tls_config(tls.clone())?;
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            address: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        address: config.listen,
        source,
    })?;
    let metrics_listener = match config.metrics_listen {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .map_err(|source| ServeError::Bind { address, source })?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .and_then(|listener| listener.local_addr().ok());
    let metrics = Arc::new(Metrics::new());
    let tracer = match &config.otlp_endpoint {
        Some(endpoint) => Some(RunTracer::new(traces::tracer(&traces::provider(endpoint)?))),
        None => None,
    };
    let observer = Observer::new(metrics.clone(), tracer);
    let dispatch = Dispatch::start(config, store.clone(), observer, metrics).await?;
    let (shutdown_sender, shutdown_receiver) = oneshot::channel();
    let config = config.clone();
    let secured = Security {
        keys_enabled: keys.enabled(),
        keys,
        tls,
    };
    let tls_enabled = secured.tls.is_some();
    tracing::info!(
        address = %local_addr,
        tls = tls_enabled,
        mutual_tls = config.security.tls_client_ca.is_some(),
        api_keys = secured.keys_enabled,
        "tributary is serving"
    );
    let task = tokio::spawn(serve(
        config,
        store,
        dispatch,
        secured,
        Listeners {
            api: listener,
            metrics: metrics_listener,
        },
        cors,
        async {
            let _ = shutdown_receiver.await;
        },
    ));
    Ok(RunningServer {
        local_addr,
        tls: tls_enabled,
        metrics_addr,
        shutdown: Some(shutdown_sender),
        task,
    })
}

/// Keys and TLS, as `serve` applies them.
struct Security {
    keys: Arc<KeyRing>,
    keys_enabled: bool,
    tls: Option<ServerTlsConfig>,
}

/// The sockets the server was given: the API's (gRPC, gRPC-Web, the
/// dashboard, `/metrics`) and `--metrics-listen`'s.
struct Listeners {
    api: TcpListener,
    metrics: Option<TcpListener>,
}

/// The coordinator and what stops it.
struct Dispatch {
    coordinator: CoordinatorHandle,
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
    stopped: watch::Receiver<bool>,
    /// Committed events for live watchers.
    events: broadcast::Sender<Arc<EventRecord>>,
    metrics: Arc<Metrics>,
}

impl Dispatch {
    /// Starts the coordinator after it has rebuilt the active runs from the
    /// database, so the server reports SERVING only once recovery is done.
    async fn start(
        config: &ServeConfig,
        store: Arc<dyn Store>,
        observer: Observer,
        metrics: Arc<Metrics>,
    ) -> Result<Dispatch, ServeError> {
        let (stop, stopped) = watch::channel(false);
        // Live event fan-out. A watcher that lags behind the buffer is told
        // so and catches up from the database, so the engine never waits.
        // The command line refuses 0, which the channel cannot take; a
        // config built in code gets the same floor.
        let (events, _) = broadcast::channel(config.event_buffer.max(1) as usize);
        let (coordinator, task) = Coordinator::start(
            store,
            DispatchSettings {
                run: RunSettings {
                    default_timeout_ms: config.default_task_timeout_ms,
                    max_reassignments: config.max_reassignments,
                    max_run_context_bytes: config.max_run_context_bytes,
                },
                max_batch: 2048,
                lease_timeout_ms: config.lease_timeout_ms,
                max_active_runs_per_namespace: config.max_active_runs_per_namespace,
                max_executors_per_namespace: config.max_executors_per_namespace,
            },
            events.clone(),
            stopped.clone(),
            observer,
        )
        .await?;
        Ok(Dispatch {
            coordinator,
            task,
            stop,
            stopped,
            events,
            metrics,
        })
    }
}

/// How often an idle accepted connection is probed, so that a peer that
/// vanished without a FIN (a host that lost power, a dropped NAT entry) does
/// not hold a stream open forever.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// The accepted connections, each with `TCP_NODELAY` (gRPC writes small
/// frames, and Nagle's algorithm would hold each behind the peer's delayed
/// ACK: about 40 ms per message for any client that does not turn it off on
/// its own side) and TCP keepalive.
/// At the file-descriptor limit, accepting waits with backoff instead of
/// spinning (see [`AcceptBackoff`]).
fn accepted_connections(listener: TcpListener) -> AcceptBackoff<TcpIncoming> {
    AcceptBackoff::new(
        TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(TCP_KEEPALIVE)),
    )
}

async fn serve(
    config: ServeConfig,
    store: Arc<dyn Store>,
    dispatch: Dispatch,
    security: Security,
    listeners: Listeners,
    cors: Option<tower_http::cors::CorsLayer>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tributary_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tributary_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let Dispatch {
        coordinator,
        task: coordinator_task,
        stop: stop_dispatch,
        stopped: dispatch_stopped,
        events,
        metrics,
    } = dispatch;
    let metrics_endpoint = MetricsEndpoint {
        metrics: metrics.clone(),
        coordinator: coordinator.clone(),
    };
    let metrics_task = listeners.metrics.map(|listener| {
        metrics::serve_alone(listener, metrics_endpoint.clone(), dispatch_stopped.clone())
    });

    let max_message_bytes = config.max_message_bytes();
    let workflow_service =
        WorkflowServiceServer::new(WorkflowApi::new(store.clone(), config.definition_limits()))
            .max_decoding_message_size(max_message_bytes);
    let event_feed = EventFeed::new(store.clone(), events.clone(), dispatch_stopped.clone())
        .with_watcher_gauge(metrics.watchers.clone());
    let run_service = RunServiceServer::new(RunApi::new(
        store.clone(),
        coordinator.clone(),
        event_feed,
        config.max_context_bytes,
        max_message_bytes,
    ))
    .max_decoding_message_size(max_message_bytes)
    .max_encoding_message_size(max_message_bytes);
    let schedule_clock = config.schedule_clock();
    let scheduler_wake = SchedulerWake::default();
    let schedule_service = ScheduleServiceServer::new(ScheduleApi::new(
        store.clone(),
        scheduler_wake.clone(),
        schedule_clock.clone(),
        config.max_context_bytes,
    ))
    .max_decoding_message_size(max_message_bytes)
    .max_encoding_message_size(max_message_bytes);
    let scheduler_task = Scheduler {
        store: store.clone(),
        coordinator: coordinator.clone(),
        clock: schedule_clock,
        wake: scheduler_wake,
        events: events.subscribe(),
        stop: dispatch_stopped.clone(),
        settings: SchedulerSettings::default(),
    }
    .spawn();
    let executor_service = ExecutorServiceServer::new(
        ExecutorApi::new(
            coordinator,
            ProtocolSettings {
                heartbeat_interval_ms: config.heartbeat_interval_ms,
                lease_timeout_ms: config.lease_timeout_ms,
                max_message_bytes: max_message_bytes as u64,
                max_context_bytes: config.max_context_bytes,
                trace_context: config.otlp_endpoint.is_some(),
                register: RegisterLimits {
                    max_handlers: config.max_register_handlers,
                    max_bytes: config.max_register_bytes,
                },
                register_timeout_ms: config.register_timeout_ms,
            },
            dispatch_stopped.clone(),
        )
        .with_events(events.clone()),
    )
    .max_decoding_message_size(max_message_bytes)
    .max_encoding_message_size(max_message_bytes);

    let retention_task = config.retention().map(|keep_for| {
        retention::spawn(
            store.clone(),
            RetentionSettings {
                keep_for,
                interval: config.retention_interval(),
                batch_runs: config.retention_batch_runs,
            },
            dispatch_stopped,
        )
    });

    // The store is connected and migrated by now, so the server is ready.
    health_reporter
        .set_serving::<WorkflowServiceServer<WorkflowApi>>()
        .await;
    health_reporter
        .set_serving::<RunServiceServer<RunApi>>()
        .await;
    health_reporter
        .set_serving::<ExecutorServiceServer<ExecutorApi>>()
        .await;
    health_reporter
        .set_serving::<ScheduleServiceServer<ScheduleApi>>()
        .await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;

    let layers = tower::ServiceBuilder::new()
        .layer(
            TraceLayer::new_for_grpc()
                .make_span_with(traces::call_span)
                .on_request(())
                .on_response(log_trailers_only_response)
                .on_eos(log_end_of_stream)
                .on_failure(()),
        )
        .layer(UnaryConcurrencyLimitLayer::new(config.concurrency_limit))
        .into_inner();

    let key_service = KeyServiceServer::new(KeyApi::new(security.keys.clone()));
    let mut builder = Server::builder();
    if let Some(tls) = security.tls {
        builder = builder.tls_config(tls)?;
    }
    // Every gRPC service is behind the key check, so gRPC-Web calls are
    // checked as gRPC ones once translated. gRPC-Web sits on the gRPC
    // routes only: it answers any other HTTP/1.1 request 400, and
    // Prometheus scrapes over HTTP/1.1.
    let auth = AuthLayer::new(security.keys.clone());
    let mut grpc_routes = tonic::service::Routes::new(auth.layer(health_service))
        .add_service(auth.layer(reflection_v1))
        .add_service(auth.layer(reflection_v1alpha))
        .add_service(auth.layer(workflow_service))
        .add_service(auth.layer(run_service))
        .add_service(auth.layer(executor_service))
        .add_service(auth.layer(schedule_service))
        .add_service(auth.layer(key_service))
        .into_axum_router()
        .layer(ReadErrorStatusLayer)
        .layer(tonic_web::GrpcWebLayer::new());
    // `/metrics` checks no key, so a server started with keys serves it
    // only on `--metrics-listen`, an address its operator keeps private.
    if !security.keys_enabled {
        grpc_routes = grpc_routes.merge(metrics::route(metrics_endpoint));
    }
    let (draining, drain_started) = oneshot::channel::<()>();
    let serving = builder
        // Applies to the time until a handler returns its response, so it
        // bounds unary calls and leaves established streams alone.
        .timeout(config.request_timeout())
        .accept_http1(true)
        // The dashboard's files and CORS, in front of everything else.
        .layer(crate::web::layer(cors))
        .layer(layers)
        .add_routes(tonic::service::Routes::from(grpc_routes))
        .serve_with_incoming_shutdown(accepted_connections(listeners.api), async move {
            shutdown.await;
            // Executor and watch streams never end on their own; stopping
            // dispatch closes them so that the graceful shutdown can
            // complete. It stops the retention job too.
            let _ = stop_dispatch.send(true);
            let _ = draining.send(());
        });
    // A client that stopped reading a stream keeps its HTTP/2 stream from
    // finishing (the server cannot send the end past unread data), so the
    // graceful drain waits at most the grace period; the connections still
    // open then are left to close with the process.
    let grace = config.shutdown_grace();
    let result = tokio::select! {
        result = serving => result,
        () = async {
            match drain_started.await {
                Ok(()) => tokio::time::sleep(grace).await,
                // The server failed without a shutdown; the other branch ends.
                Err(_) => std::future::pending().await,
            }
        } => {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "calls still open after the shutdown grace period; leaving them"
            );
            Ok(())
        }
    };
    // The scheduler stops at the shutdown signal; aborting also covers a
    // server that failed without one (a fire cut short is found again by
    // its idempotency key).
    scheduler_task.abort();
    let _ = scheduler_task.await;
    let _ = coordinator_task.await;
    if let Some(metrics_task) = metrics_task {
        let _ = metrics_task.await;
    }
    if let Some(retention_task) = retention_task {
        // The job stops at the shutdown signal between batches; aborting
        // also covers a server that failed without one, and a batch cut
        // short just rolls back.
        retention_task.abort();
        let _ = retention_task.await;
    }
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    store.close().await;
    tracing::info!("tributary stopped");
    Ok(result?)
}

/// Errors usually travel "trailers-only": the status is in the headers and
/// no body follows, so the call ends here.
fn log_trailers_only_response<B>(response: &http::Response<B>, latency: Duration, span: &Span) {
    if let Some(status) = response.headers().get("grpc-status") {
        log_call_finished(status.to_str().unwrap_or("?"), latency, span);
    }
}

fn log_end_of_stream(trailers: Option<&http::HeaderMap>, duration: Duration, span: &Span) {
    let status = trailers
        .and_then(|trailers| trailers.get("grpc-status"))
        .and_then(|status| status.to_str().ok())
        .unwrap_or("0");
    log_call_finished(status, duration, span);
}

/// Every call is logged at DEBUG; a call that ended with an error status
/// at INFO, so a default log shows failures without one line per call.
fn log_call_finished(status: &str, latency: Duration, span: &Span) {
    span.record("rpc.grpc.status_code", status);
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if status == "0" {
        tracing::debug!(status, latency_ms, "call finished");
    } else {
        tracing::info!(status, latency_ms, "call finished");
    }
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_no_delay_and_keepalive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let mut incoming = accepted_connections(listener);
        // The client leaves Nagle on, like grpcio and grpc-go clients do on
        // sockets they did not configure.
        let _client = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let accepted = incoming
            .next()
            .await
            .expect("a connection")
            .expect("accepted");
        assert!(accepted.nodelay().expect("read TCP_NODELAY"));
        let socket = socket2::SockRef::from(&accepted);
        assert!(socket.keepalive().expect("read SO_KEEPALIVE"));
    }
}
