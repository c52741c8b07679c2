//! The workflow definitions of Tributary, shared by the server and the Rust
//! SDK so that both accept and reject exactly the same definitions with the
//! same messages.
//!
//! - [`WorkflowDefinition`] / [`TaskDefinition`]: a definition as a client
//!   writes it (also the format of definition files and of
//!   `tests/vectors/validation.json`).
//! - [`validate`]: checks a definition against the rules and the
//!   [`DefinitionLimits`] and returns its normalized form, a [`WorkflowSpec`],
//!   or a [`DefinitionError`] naming the culprit.
//! - [`WorkflowSpec::version`]: the version of a normalized definition. Only
//!   the server computes versions; the SDK only validates.
//!
//! Pure: no I/O, no protobuf, no SQL, no async runtime.
//!
//! ```
//! use tributary_core::{DefinitionLimits, WorkflowDefinition, validate};
//! let definition: WorkflowDefinition = serde_json::from_str(
//!     r#"{"name": "etl", "tasks": [{"id": "load", "dependencies": ["extract"]}, {"id": "extract"}]}"#,
//! ).unwrap();
//! let spec = validate(&definition, 0, DefinitionLimits::default()).unwrap();
//! assert_eq!(spec.tasks[0].id, "extract");
//! assert_eq!(spec.tasks[1].handler, "etl.load");
//! assert_eq!(spec.version().len(), 16);
//! ```

#![warn(missing_docs)]

mod concurrency;
mod cycle;
mod definition;
mod labels;
mod map;
pub mod shown;
mod validate;

pub use concurrency::{
    CONCURRENCY_STRATEGIES, ConcurrencyDefinition, ConcurrencyError, ConcurrencyKey,
    ConcurrencySpec, ConcurrencyStrategy, DEFAULT_MAX_ACTIVE_RUNS, MAX_ACTIVE_RUNS_LIMIT,
    MAX_CONCURRENCY_KEY_BYTES, MAX_POLICY_KEY_BYTES, RunKeyError,
};
pub use definition::{
    BACKOFFS, Backoff, DEFAULT_RETRY_ATTEMPTS, DEFAULT_RETRY_DELAY_MS, DEFAULT_RETRY_JITTER,
    DEFAULT_RETRY_MAX_DELAY_MS, RetryPolicy, TRIGGER_RULES, TaskDefinition, TaskSpec, TriggerRule,
    WorkflowDefinition, WorkflowSpec,
};
pub use labels::{
    LabelError, Labels, MAX_LABEL_KEY_BYTES, MAX_LABEL_VALUE_BYTES, MAX_LABELS, check_labels,
    format_labels, labels_satisfy,
};
pub use map::{
    DEFAULT_MAP_MAX_INSTANCES, MAP_ELEMENT_KEY, MAP_INDEX_KEY, MAP_MAX_INSTANCES_LIMIT,
    MAX_MAP_KEY_BYTES, MapError, MapSpec, normalize_map,
};
pub use shown::shown;
pub use validate::{
    DefinitionError, DefinitionLimits, MAX_DELAY_MS, MAX_IN_FLIGHT, MAX_RETRY_ATTEMPTS,
    MAX_TIMEOUT_MS, is_valid_handler, is_valid_identifier, validate,
};
