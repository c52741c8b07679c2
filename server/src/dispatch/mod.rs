//! Dispatch: the coordinator that owns every active run and every connected
//! executor of this server, and the pieces it is built from (ready queue,
//! executor registry, timers).
//!
//! One tokio task runs the coordinator; everything else talks to it through
//! a [`CoordinatorHandle`]. Each turn of its loop handles a batch of commands
//! and due timers against the pure engine, assigns ready tasks to free
//! executors, commits everything the turn changed in one transaction, and
//! only then sends assignments, cancellations and acknowledgements. A result
//! and the assignment of the dependant it unblocks therefore share one
//! commit, and nothing an executor or client sees is ever ahead of the
//! database.

mod coordinator;
pub mod executors;
mod handle;
pub mod handler_in_flight;
pub mod held_values;
pub mod ready_queue;
pub mod start;
pub mod timers;
pub mod waiting;

pub use coordinator::Coordinator;
pub use handle::{
    CancelOutcome, CoordinatorHandle, DisconnectReason, DispatchError, DispatchSettings,
    ExecutorEvent, ExecutorSnapshot, RetriedRun, RetryRunCommand, StartRunCommand, StartedRun,
};
pub use waiting::{DispatchSnapshot, TaskWait, WaitingReason};
