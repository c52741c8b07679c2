//! `ExecutorService.WatchExecutors`: the namespace's connected executors,
//! pushed. The list is the coordinator's (as for `ListExecutors`); a new
//! one is read when something may have changed it: an executor stream
//! opened, closed or changed its capacity (`ExecutorChanges`), or an event
//! of the namespace was committed (attempts assigned and ended move the
//! in-flight counts). Reads are at least 250 ms apart and a list equal to
//! the last one sent is not sent again, so a busy server costs a watcher
//! at most four reads a second.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tributary_proto::timestamp_from_unix_ms;
use tributary_proto::v1 as pb;

use super::error::ApiError;
use crate::dispatch::{CoordinatorHandle, ExecutorSnapshot};
use crate::engine::records::EventRecord;

/// Shortest time between two lists sent to one watcher.
const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// A signal raised whenever an executor connects, disconnects or changes
/// its capacity; cheap to clone.
#[derive(Clone)]
pub struct ExecutorChanges(Arc<watch::Sender<()>>);

impl ExecutorChanges {
    pub fn new() -> ExecutorChanges {
        ExecutorChanges(Arc::new(watch::channel(()).0))
    }

    /// Tells every watcher to read the list again.
    pub fn notify(&self) {
        self.0.send_replace(());
    }

    fn subscribe(&self) -> watch::Receiver<()> {
        self.0.subscribe()
    }
}

impl Default for ExecutorChanges {
    fn default() -> Self {
        ExecutorChanges::new()
    }
}

/// The wire form of one connected executor.
pub fn executor_info(executor: ExecutorSnapshot) -> pb::ExecutorInfo {
    pb::ExecutorInfo {
        executor_id: executor.id,
        name: executor.registration.name,
        instance_id: executor.registration.instance_id,
        handlers: executor.registration.handlers,
        max_concurrent_attempts: executor.capacity,
        in_flight_attempt_ids: executor.in_flight,
        labels: executor.registration.labels.into_iter().collect(),
        connected_at: Some(timestamp_from_unix_ms(executor.connected_at_ms)),
        context_bytes_sent: executor.context_bytes_sent,
        values_sent_by_reference: executor.values_sent_by_reference,
    }
}

/// The stream `WatchExecutors` answers with.
pub type ExecutorListStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchExecutorsResponse, Status>> + Send>>;

/// Starts following the executors of `namespace` for one client.
pub fn watch_executors(
    coordinator: CoordinatorHandle,
    namespace: String,
    changes: &ExecutorChanges,
    events: Option<broadcast::Receiver<Arc<EventRecord>>>,
    shutdown: watch::Receiver<bool>,
) -> ExecutorListStream {
    let (sender, receiver) = mpsc::channel(2);
    tokio::spawn(follow(
        coordinator,
        namespace,
        changes.subscribe(),
        events,
        shutdown,
        sender,
    ));
    Box::pin(ReceiverStream::new(receiver))
}

type Sender = mpsc::Sender<Result<pb::WatchExecutorsResponse, Status>>;

async fn follow(
    coordinator: CoordinatorHandle,
    namespace: String,
    mut changes: watch::Receiver<()>,
    mut events: Option<broadcast::Receiver<Arc<EventRecord>>>,
    mut shutdown: watch::Receiver<bool>,
    sender: Sender,
) {
    let mut last_sent: Option<Vec<pb::ExecutorInfo>> = None;
    loop {
        changes.mark_unchanged();
        let executors = match coordinator.list_executors(&namespace).await {
            Ok(list) => list.into_iter().map(executor_info).collect::<Vec<_>>(),
            Err(error) => {
                let _ = sender.send(Err(ApiError::from(error).into())).await;
                return;
            }
        };
        if last_sent.as_ref() != Some(&executors) {
            let response = pb::WatchExecutorsResponse {
                executors: executors.clone(),
            };
            if sender.send(Ok(response)).await.is_err() {
                return;
            }
            last_sent = Some(executors);
        }
        let stop = tokio::select! {
            stop = next_change(&namespace, &mut changes, &mut events) => stop,
            _ = shutdown.wait_for(|stopped| *stopped) => true,
            () = sender.closed() => return,
        };
        if stop {
            let _ = sender
                .send(Err(Status::unavailable("the server is shutting down")))
                .await;
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(MIN_INTERVAL) => {}
            () = sender.closed() => return,
        }
    }
}

/// Waits for something that may change the list; true when the server stops.
async fn next_change(
    namespace: &str,
    changes: &mut watch::Receiver<()>,
    events: &mut Option<broadcast::Receiver<Arc<EventRecord>>>,
) -> bool {
    loop {
        let event = async {
            match events {
                Some(events) => Some(events.recv().await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = changes.changed() => return changed.is_err(),
            received = event => match received {
                Some(Ok(event)) if event.namespace == namespace => return false,
                Some(Ok(_)) => continue,
                // Too far behind to know what happened: read the list.
                Some(Err(broadcast::error::RecvError::Lagged(_))) => return false,
                Some(Err(broadcast::error::RecvError::Closed)) | None => return true,
            },
        }
    }
}
