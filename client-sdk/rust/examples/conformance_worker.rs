//! The Rust SDK's conformance worker: serves every handler of
//! `conformance/SPEC.md` on a [`tributary::Worker`], configured by the
//! environment the conformance runner sets, and drains on SIGTERM or SIGINT.
//!
//! ```text
//! cargo run -p tributary-conformance -- \
//!     --worker-cmd "target/debug/examples/conformance_worker"
//! ```

use std::borrow::Cow;
use std::fs::File;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::value::RawValue;
use tributary::{Cancellation, Context, ContextError, TaskError, TaskFuture, Worker};

/// How long a drain may take before running attempts are cancelled.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// How long `wait_cancel` waits before giving up.
const NEVER_CANCELLED: Duration = Duration::from_secs(120);

type HandlerFn = for<'a> fn(&'a mut Context) -> TaskFuture<'a>;

/// Every handler, by its name without the `conformance.` prefix.
const HANDLERS: &[(&str, HandlerFn)] = &[
    ("echo", |context| Box::pin(echo(context))),
    ("fail_once", |context| Box::pin(fail_once(context))),
    ("fail_always", |context| Box::pin(fail_always(context))),
    ("fail_fatal", |context| Box::pin(fail_fatal(context))),
    ("throw", |context| Box::pin(throw(context))),
    ("sleep", |context| Box::pin(sleep(context))),
    ("spin", |context| Box::pin(spin(context))),
    ("wait_cancel", |context| Box::pin(wait_cancel(context))),
    ("big", |context| Box::pin(big(context))),
    ("measure", |context| Box::pin(measure(context))),
    ("vector", |context| Box::pin(vector(context))),
    ("map_echo", |context| Box::pin(map_echo(context))),
];

#[tokio::main]
async fn main() -> ExitCode {
    match serve().await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("conformance_worker: {message}");
            ExitCode::from(2)
        }
    }
}

async fn serve() -> Result<ExitCode, String> {
    let server = required("TRIBUTARY_SERVER")?;
    let namespace = required("TRIBUTARY_NAMESPACE")?;
    let capacity: u32 = parse_variable("CONFORMANCE_CAPACITY")?;
    let value_cache_bytes: u64 = parse_variable("CONFORMANCE_VALUE_CACHE_BYTES")?;
    let log_path = required("CONFORMANCE_LOG")?;
    let name = required("CONFORMANCE_WORKER_NAME")?;
    let file = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|error| format!("cannot open CONFORMANCE_LOG {log_path}: {error}"))?;
    LOG.set(file)
        .map_err(|_| "the log is opened once".to_owned())?;
    let mut builder = Worker::builder(server)
        .namespace(namespace)
        .name(name)
        .capacity(capacity)
        .value_cache_bytes(value_cache_bytes);
    // `key=value,key=value`; unset or empty means no labels.
    let labels = std::env::var("CONFORMANCE_LABELS").unwrap_or_default();
    for label in labels.split(',').filter(|label| !label.is_empty()) {
        let (key, value) = label.split_once('=').unwrap_or((label, ""));
        builder = builder.label(key, value);
    }
    for (handler, function) in HANDLERS {
        builder = builder.handler(format!("conformance.{handler}"), *function);
    }
    let worker = builder.start().map_err(|error| error.to_string())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|error| format!("cannot handle SIGTERM: {error}"))?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let report = worker.shutdown(DRAIN_DEADLINE).await;
    if report.drained {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "conformance_worker: drain deadline passed, {} attempts cancelled",
            report.cancelled_attempts
        );
        Ok(ExitCode::FAILURE)
    }
}

fn required(variable: &str) -> Result<String, String> {
    std::env::var(variable).map_err(|_| format!("{variable} is not set"))
}

fn parse_variable<T: std::str::FromStr>(variable: &str) -> Result<T, String> {
    let text = required(variable)?;
    text.parse()
        .map_err(|_| format!("{variable} is not a number: {text:?}"))
}

static LOG: OnceLock<File> = OnceLock::new();

/// Appends one log line with a single `write` (the file is opened with
/// `O_APPEND`), so the lines of concurrent attempts never interleave.
fn log(event: &str, handler: &str, attempt_id: &str) {
    #[derive(Serialize)]
    struct Line<'a> {
        event: &'a str,
        handler: &'a str,
        attempt_id: &'a str,
        pid: u32,
    }
    let line = Line {
        event,
        handler,
        attempt_id,
        pid: std::process::id(),
    };
    let mut text = serde_json::to_string(&line).unwrap_or_default();
    text.push('\n');
    if let Some(mut file) = LOG.get() {
        match file.write(text.as_bytes()) {
            Ok(written) if written == text.len() => {}
            Ok(written) => eprintln!("conformance_worker: short log write ({written} bytes)"),
            Err(error) => eprintln!("conformance_worker: cannot write the log: {error}"),
        }
    }
}

/// Logs `start` when made and `end` when dropped: a Rust handler's code ends
/// when its future returns or is dropped (the SDK drops the future of a
/// cancelled attempt). A future dropped by a cancellation before it saw the
/// cancellation itself logs `cancelled` first, because being dropped is how
/// async Rust code observes it.
struct Span {
    handler: String,
    attempt_id: String,
    cancellation: Option<Cancellation>,
    cancelled_logged: bool,
}

impl Span {
    fn enter(context: &Context) -> Span {
        let (handler, attempt_id) = context
            .attempt()
            .map(|attempt| (attempt.handler.clone(), attempt.attempt_id.clone()))
            .unwrap_or_default();
        log("start", &handler, &attempt_id);
        Span {
            handler,
            attempt_id,
            cancellation: context.cancellation(),
            cancelled_logged: false,
        }
    }

    fn cancelled(&mut self) {
        if !self.cancelled_logged {
            self.cancelled_logged = true;
            log("cancelled", &self.handler, &self.attempt_id);
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if self
            .cancellation
            .as_ref()
            .is_some_and(Cancellation::is_cancelled)
        {
            self.cancelled();
        }
        log("end", &self.handler, &self.attempt_id);
    }
}

fn attempt_number(context: &Context) -> u32 {
    context.attempt().map_or(0, |attempt| attempt.number)
}

async fn echo(context: &mut Context) -> Result<(), TaskError> {
    let _span = Span::enter(context);
    let value = context
        .get_raw("echo_in")
        .ok_or_else(|| TaskError::fatal("echo: the input has no key \"echo_in\""))?
        .into_owned();
    context.upsert_raw("echo_out", value);
    Ok(())
}

async fn map_echo(context: &mut Context) -> Result<(), TaskError> {
    let _span = Span::enter(context);
    let element = context
        .get_raw(tributary::MAP_ELEMENT_KEY)
        .ok_or_else(|| TaskError::fatal("map_echo: the input has no key \"map_element\""))?
        .into_owned();
    let input_index: Option<u32> = context.get(tributary::MAP_INDEX_KEY).ok();
    let assigned_index = context.attempt().and_then(|attempt| attempt.map_index);
    if input_index.is_none() || input_index != assigned_index {
        return Err(TaskError::fatal(format!(
            "map_echo: the input's map_index is {input_index:?}, the attempt's {assigned_index:?}"
        )));
    }
    context.upsert_raw("map_echo_out", element);
    Ok(())
}

async fn fail_once(context: &mut Context) -> Result<(), TaskError> {
    let _span = Span::enter(context);
    let number = attempt_number(context);
    if number == 1 {
        return Err(TaskError::retryable("fail_once: attempt 1"));
    }
    context.upsert("fail_once_attempt", number);
    Ok(())
}

async fn fail_always(context: &mut Context) -> Result<(), TaskError> {
    let _span = Span::enter(context);
    Err(TaskError::retryable(format!(
        "fail_always: attempt {}",
        attempt_number(context)
    )))
}

async fn fail_fatal(context: &mut Context) -> Result<(), TaskError> {
    let _span = Span::enter(context);
    Err(TaskError::fatal("fail_fatal"))
}

async fn throw(context: &mut Context) -> Result<(), TaskError> {
    let _span = Span::enter(context);
    panic!("throw: boom");
}

async fn sleep(context: &mut Context) -> Result<(), TaskError> {
    let _span = Span::enter(context);
    let sleep_ms: u64 = context.get("sleep_ms")?;
    tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
    context.upsert("slept_ms", sleep_ms);
    Ok(())
}

async fn spin(context: &mut Context) -> Result<(), TaskError> {
    let _span = Span::enter(context);
    let spin_ms: u64 = context.get("spin_ms")?;
    // Deliberately blocks the thread, as CPU-bound user code would.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(spin_ms) {
        std::hint::spin_loop();
    }
    context.upsert("spun_ms", spin_ms);
    Ok(())
}

async fn wait_cancel(context: &mut Context) -> Result<(), TaskError> {
    let mut span = Span::enter(context);
    let Some(cancellation) = context.cancellation() else {
        return Err(TaskError::fatal("wait_cancel: not running in a worker"));
    };
    tokio::select! {
        reason = cancellation.cancelled() => {
            span.cancelled();
            Err(TaskError::retryable(format!("wait_cancel: cancelled ({reason})")))
        }
        () = tokio::time::sleep(NEVER_CANCELLED) => {
            Err(TaskError::retryable("wait_cancel: never cancelled"))
        }
    }
}

async fn big(context: &mut Context) -> Result<(), TaskError> {
    let _span = Span::enter(context);
    let big_bytes: usize = context.get("big_bytes")?;
    context.upsert("big", "x".repeat(big_bytes));
    Ok(())
}

async fn measure(context: &mut Context) -> Result<(), TaskError> {
    let _span = Span::enter(context);
    let mut measured = serde_json::Map::new();
    let keys: Vec<String> = context
        .keys()
        .filter(|key| *key != "echo_in")
        .map(str::to_owned)
        .collect();
    for key in keys {
        let raw = context
            .get_raw(&key)
            .ok_or_else(|| TaskError::fatal(format!("measure: {key:?} vanished")))?;
        measured.insert(key, compact_length(raw.get()).into());
    }
    context.upsert("measured", measured);
    Ok(())
}

/// The length in bytes of the compact form of JSON text: the text without
/// the whitespace between tokens.
fn compact_length(text: &str) -> usize {
    let mut length = 0;
    let mut in_string = false;
    let mut escaped = false;
    for byte in text.bytes() {
        if in_string {
            length += 1;
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            length += 1;
            in_string = byte == b'"';
        }
    }
    length
}

async fn vector(context: &mut Context) -> Result<(), TaskError> {
    #[derive(serde::Deserialize)]
    struct Operation {
        op: String,
        key: String,
        value: Option<Box<RawValue>>,
    }
    let _span = Span::enter(context);
    let input = context
        .get_raw("vector_input")
        .ok_or_else(|| TaskError::fatal("vector: the input has no key \"vector_input\""))?;
    let mut subject = Context::from_json(input.get())?;
    let operations: Vec<Operation> = context.get("vector_ops")?;
    let mut errors = Vec::with_capacity(operations.len());
    for operation in operations {
        let value = || {
            operation.value.clone().ok_or_else(|| {
                TaskError::fatal(format!("vector: {} without a value", operation.op))
            })
        };
        let outcome = match operation.op.as_str() {
            "insert" => subject.insert_raw(operation.key.clone(), value()?),
            "update" => subject.update_raw(operation.key.clone(), value()?),
            "upsert" => {
                subject.upsert_raw(operation.key.clone(), value()?);
                Ok(())
            }
            "remove" => {
                subject.discard(&operation.key);
                Ok(())
            }
            other => return Err(TaskError::fatal(format!("vector: unknown op {other:?}"))),
        };
        errors.push(match outcome {
            Ok(()) => None,
            Err(ContextError::KeyExists { .. }) => Some("key_exists"),
            Err(ContextError::KeyNotFound { .. }) => Some("key_missing"),
            Err(error) => return Err(error.into()),
        });
    }
    let (set, removed) = subject.delta();
    let raw_of = |key: &str| -> Result<Cow<'_, RawValue>, TaskError> {
        subject
            .get_raw(key)
            .ok_or_else(|| TaskError::fatal(format!("vector: {key:?} vanished")))
    };
    let data = raw_object(subject.keys(), raw_of)?;
    let set = raw_object(set.keys().map(String::as_str), raw_of)?;
    let result = format!(
        r#"{{"data":{data},"set":{set},"removed":{},"errors":{}}}"#,
        serde_json::to_string(&removed).map_err(|error| TaskError::fatal(error.to_string()))?,
        serde_json::to_string(&errors).map_err(|error| TaskError::fatal(error.to_string()))?,
    );
    let result =
        RawValue::from_string(result).map_err(|error| TaskError::fatal(error.to_string()))?;
    context.upsert_raw("vector_result", result);
    Ok(())
}

/// JSON text of an object of `keys` with their values' text, unparsed.
fn raw_object<'k, 'v>(
    keys: impl Iterator<Item = &'k str>,
    raw_of: impl Fn(&str) -> Result<Cow<'v, RawValue>, TaskError>,
) -> Result<String, TaskError> {
    let mut text = String::from("{");
    for (index, key) in keys.enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(
            &serde_json::to_string(key).map_err(|error| TaskError::fatal(error.to_string()))?,
        );
        text.push(':');
        text.push_str(raw_of(key)?.get());
    }
    text.push('}');
    Ok(text)
}
