//! The scheduling engine: pure logic, no I/O. It knows workflow plans, run
//! state machines, trigger rules, retry policies and the context rule; it
//! never sees protobuf, SQL or sockets. Given an event (a result, a timer, a
//! cancellation) it returns what to persist and what to do, and the runtime
//! carries that out.

pub mod concurrency;
pub mod context;
pub mod context_size;
pub mod plan;
pub mod records;
pub mod retry;
pub mod run;
pub mod schedule;
pub mod schedule_plan;
pub mod trigger;
