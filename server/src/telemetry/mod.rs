//! Operations: Prometheus metrics (`metrics.rs`), OpenTelemetry traces
//! (`traces.rs`), and what the coordinator reports about committed work
//! (`observer.rs`: counters, run and attempt spans, the run and task log
//! lines).
//!
//! Everything the coordinator does here happens after a commit, from what
//! it committed, with atomics and (only when traces are exported) a map of
//! open spans: the hot path never waits on a scraper or an exporter.

pub mod metrics;
pub mod observer;
pub mod traces;

pub use metrics::Metrics;
pub use observer::Observer;
