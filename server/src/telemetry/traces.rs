//! OpenTelemetry traces, exported over OTLP/gRPC when `--otlp-endpoint` is
//! set (and not built at all otherwise).
//!
//! A run's trace id is its run id (a UUID is 128 bits, as a trace id is),
//! so a run's trace is found from its id without a lookup. The run span and
//! each attempt's span take their span ids from the run's and the attempt's
//! UUIDs, which is what lets an `Assign` name its attempt's span in a W3C
//! `traceparent` before that span is exported (spans are emitted when they
//! end, with their real start and end times, so the coordinator never holds
//! a span open across a turn).

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::engine::records::{EventRecord, EventType, RunStatus};

/// Why the trace exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the OTLP trace exporter for {endpoint}: {message}")]
pub struct TraceSetupError {
    pub endpoint: String,
    pub message: String,
}

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The process's tracer provider exporting to `endpoint`, built on first
/// use; the command line installs it for API call spans and the coordinator
/// uses it for run and attempt spans. Must be called inside a tokio runtime
/// (the gRPC exporter's channel lives there).
pub fn provider(endpoint: &str) -> Result<SdkTracerProvider, TraceSetupError> {
    if let Some(provider) = PROVIDER.get() {
        return Ok(provider.clone());
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|error| TraceSetupError {
            endpoint: endpoint.to_owned(),
            message: error.to_string(),
        })?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("tributary").build())
        .build();
    Ok(PROVIDER.get_or_init(|| provider).clone())
}

/// Exports what is buffered and stops the exporter (at server exit).
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(error) = provider.shutdown()
    {
        tracing::warn!(%error, "cannot flush the trace exporter");
    }
}

/// The tracer the server's spans are made with.
pub fn tracer(provider: &SdkTracerProvider) -> SdkTracer {
    provider.tracer("tributary")
}

fn uuid_bytes(id: &str) -> [u8; 16] {
    match uuid::Uuid::parse_str(id) {
        Ok(uuid) => *uuid.as_bytes(),
        // Ids are UUIDs; anything else still gets a stable id.
        Err(_) => {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(id.as_bytes());
            let mut bytes = [0; 16];
            bytes.copy_from_slice(&digest[..16]);
            bytes
        }
    }
}

/// The trace of a run.
pub fn trace_id(run_id: &str) -> TraceId {
    TraceId::from_bytes(uuid_bytes(run_id))
}

/// The span of a run or an attempt: the random low half of its UUIDv7.
pub fn span_id(id: &str) -> SpanId {
    let bytes = uuid_bytes(id);
    let mut low = [0; 8];
    low.copy_from_slice(&bytes[8..]);
    SpanId::from_bytes(low)
}

/// The W3C `traceparent` of an attempt's span, sent in its `Assign`.
pub fn traceparent(run_id: &str, attempt_id: &str) -> String {
    format!("00-{}-{}-01", trace_id(run_id), span_id(attempt_id))
}

/// The span of one API call (the tower trace layer's). With traces
/// exported it becomes a server span named by the method, the child of the
/// caller's span when the request carries a `traceparent`.
pub fn call_span<B>(request: &http::Request<B>) -> tracing::Span {
    let path = request.uri().path();
    if PROVIDER.get().is_none() {
        // Log lines carry the method alone.
        return tracing::info_span!("grpc", method = %path);
    }
    let span = tracing::info_span!(
        "grpc",
        method = %path,
        otel.name = %path,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.grpc.status_code = tracing::field::Empty,
    );
    if let Some(parent) = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(remote_parent)
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        // Fails only without the OpenTelemetry layer: nothing to parent.
        let _ = span.set_parent(parent);
    }
    span
}

/// The remote span a W3C `traceparent` names (version 00).
fn remote_parent(traceparent: &str) -> Option<Context> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let context = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    Some(Context::new().with_remote_span_context(context))
}

fn time_of(unix_ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(unix_ms).unwrap_or(0))
}

/// An attempt whose span is not ended yet.
struct OpenAttempt {
    run_id: String,
    workflow: String,
    task_id: String,
    number: u32,
    executor_id: String,
    assigned_ms: i64,
}

/// Emits run and attempt spans from committed events.
pub struct RunTracer {
    tracer: SdkTracer,
    attempts: HashMap<String, OpenAttempt>,
}

impl RunTracer {
    pub fn new(tracer: SdkTracer) -> RunTracer {
        RunTracer {
            tracer,
            attempts: HashMap::new(),
        }
    }

    /// Opens an attempt's span at its assignment and ends it with the event
    /// that ends the attempt.
    pub fn on_event(&mut self, event: &EventRecord, _run_created_ms: Option<i64>) {
        let Some(attempt_id) = event.details.attempt_id.as_deref() else {
            return;
        };
        let outcome = match event.event_type {
            EventType::TaskAssigned => {
                self.attempts.insert(
                    attempt_id.to_owned(),
                    OpenAttempt {
                        run_id: event.run_id.clone(),
                        workflow: event.workflow_name.clone(),
                        task_id: event.details.task_id.clone().unwrap_or_default(),
                        number: event.details.attempt_number.unwrap_or(0),
                        executor_id: event.details.executor_id.clone().unwrap_or_default(),
                        assigned_ms: event.created_at_ms,
                    },
                );
                return;
            }
            EventType::TaskSucceeded => "succeeded",
            EventType::TaskFailed | EventType::TaskRetryScheduled => "failed",
            EventType::TaskTimedOut => "timed_out",
            EventType::ExecutorLost => "lost",
            EventType::TaskCancelled => "cancelled",
            _ => return,
        };
        if let Some(open) = self.attempts.remove(attempt_id) {
            self.end_attempt(attempt_id, open, event, outcome);
        }
    }

    fn end_attempt(&self, attempt_id: &str, open: OpenAttempt, end: &EventRecord, outcome: &str) {
        let run_span = SpanContext::new(
            trace_id(&open.run_id),
            span_id(&open.run_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let parent = Context::new().with_remote_span_context(run_span);
        let status = match outcome {
            "succeeded" => Status::Ok,
            _ => Status::error(
                end.details
                    .error
                    .clone()
                    .unwrap_or_else(|| outcome.to_owned()),
            ),
        };
        let builder = SpanBuilder::from_name(format!("task {}", open.task_id))
            .with_kind(SpanKind::Internal)
            .with_span_id(span_id(attempt_id))
            .with_start_time(time_of(open.assigned_ms))
            .with_status(status)
            .with_attributes([
                KeyValue::new("tributary.run_id", open.run_id),
                KeyValue::new("tributary.workflow", open.workflow),
                KeyValue::new("tributary.task_id", open.task_id),
                KeyValue::new("tributary.attempt_id", attempt_id.to_owned()),
                KeyValue::new("tributary.attempt", i64::from(open.number)),
                KeyValue::new("tributary.executor_id", open.executor_id),
                KeyValue::new("tributary.outcome", outcome.to_owned()),
            ]);
        let mut span = self.tracer.build_with_context(builder, &parent);
        opentelemetry::trace::Span::end_with_timestamp(&mut span, time_of(end.created_at_ms));
    }

    /// Emits the run's span, from its creation to its end.
    pub fn run_finished(&mut self, event: &EventRecord, created_ms: i64, status: RunStatus) {
        // Attempts ended with the run (cancelled) without an event naming
        // them are closed here.
        self.attempts.retain(|_, open| open.run_id != event.run_id);
        let span_status = match status {
            RunStatus::Succeeded => Status::Ok,
            _ => Status::error(
                event
                    .details
                    .error
                    .clone()
                    .unwrap_or_else(|| status.as_str().to_owned()),
            ),
        };
        let builder = SpanBuilder::from_name(format!("run {}", event.workflow_name))
            .with_kind(SpanKind::Internal)
            .with_trace_id(trace_id(&event.run_id))
            .with_span_id(span_id(&event.run_id))
            .with_start_time(time_of(created_ms))
            .with_status(span_status)
            .with_attributes([
                KeyValue::new("tributary.run_id", event.run_id.clone()),
                KeyValue::new("tributary.workflow", event.workflow_name.clone()),
                KeyValue::new("tributary.namespace", event.namespace.clone()),
                KeyValue::new("tributary.status", status.as_str()),
            ]);
        let mut span = self.tracer.build_with_context(builder, &Context::new());
        opentelemetry::trace::Span::end_with_timestamp(&mut span, time_of(event.created_at_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempts_traceparent_names_the_runs_trace_and_the_attempts_span() {
        let run_id = "01890a5d-ac96-774b-bcce-b302099a8057";
        let attempt_id = "01890a5d-ac97-7c3b-8d2e-0123456789ab";
        assert_eq!(
            traceparent(run_id, attempt_id),
            "00-01890a5dac96774bbcceb302099a8057-8d2e0123456789ab-01"
        );
        assert_eq!(span_id(run_id).to_string(), "bcceb302099a8057");
    }
}
