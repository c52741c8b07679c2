//! Event streams for watchers: the history of a run or of a namespace read
//! from the database, then live events from the coordinator's broadcast,
//! without a gap or a duplicate at the switch.
//!
//! Every watcher runs the same loop in its own task. It subscribes to the
//! broadcast *before* reading the database, so an event committed while the
//! history is read is either in the pages read or queued on the
//! subscription (or both); the watcher remembers the position of the last
//! event it delivered (a run's sequence number, or the global cursor) and
//! skips anything at or before it. Both sources are in commit order: the
//! database because cursors are assigned in commit order, the broadcast
//! because the single coordinator publishes each batch right after its
//! commit.
//!
//! Slow watchers never slow the engine. The broadcast has a bounded buffer
//! and never waits; a watcher that falls behind it gets `Lagged` and reads
//! on from the database, in bounded pages, from its last delivered
//! position. Events reach the client through a bounded channel, so a client
//! that stops reading parks its watcher on a full channel (and, soon, on
//! `Lagged`) with a fixed amount of memory.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};

use crate::engine::records::{EventFilter, EventPosition, EventQuery, EventRecord, EventType};
use crate::store::{Store, StoreError};

/// Events read from the database per query while catching up.
pub const PAGE_SIZE: u32 = 500;

/// Events queued per watcher between its task and the gRPC response.
const WATCHER_QUEUE: usize = 64;

/// What a watcher's stream yields.
pub type WatchItem = Result<Arc<EventRecord>, WatchError>;

/// Why a watch stream ended early.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("the server is shutting down; resume from the last event received")]
    ShuttingDown,
    #[error("after_cursor {after_cursor} is beyond the newest event's cursor {newest_cursor}")]
    CursorBeyondEnd {
        after_cursor: u64,
        newest_cursor: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a namespace watcher starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// After this cursor (0: the whole retained history).
    After(u64),
    /// At the current end: only events committed from now on.
    Now,
}

/// Starts watchers; one per server, cheap to share.
pub struct EventFeed {
    store: Arc<dyn Store>,
    live: broadcast::Sender<Arc<EventRecord>>,
    shutdown: watch::Receiver<bool>,
    /// Counts the watchers running, for the metrics.
    watchers: Option<prometheus_client::metrics::gauge::Gauge>,
}

impl EventFeed {
    /// `live` is the coordinator's broadcast of committed events; watchers
    /// end when `shutdown` turns true.
    pub fn new(
        store: Arc<dyn Store>,
        live: broadcast::Sender<Arc<EventRecord>>,
        shutdown: watch::Receiver<bool>,
    ) -> EventFeed {
        EventFeed {
            store,
            live,
            shutdown,
            watchers: None,
        }
    }

    /// Keeps `gauge` at the number of watchers running.
    pub fn with_watcher_gauge(
        mut self,
        gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> EventFeed {
        self.watchers = Some(gauge);
        self
    }

    /// Streams a run's events after `after_sequence`, then its live events,
    /// and ends after the RUN_FINISHED that is the log's last event (a
    /// retried run has earlier ones). [`StoreError::NotFound`] (before any
    /// event) when the namespace has no such run.
    pub async fn watch_run(
        &self,
        namespace: &str,
        run_id: &str,
        after_sequence: u64,
    ) -> Result<mpsc::Receiver<WatchItem>, StoreError> {
        let live = self.live.subscribe();
        // Read after subscribing: a run already terminal here has all its
        // events committed, so the history alone is complete.
        let status = self.store.run_status(namespace, run_id).await?;
        let scope = Scope::Run {
            run_id: run_id.to_owned(),
            after_sequence,
            finished: status.is_terminal(),
        };
        Ok(self.spawn(namespace, scope, live))
    }

    /// Streams the namespace's events that pass `filter`, after
    /// `after_cursor`, then live ones; never ends on its own.
    pub async fn watch_namespace(
        &self,
        namespace: &str,
        filter: EventFilter,
        start: WatchStart,
    ) -> Result<mpsc::Receiver<WatchItem>, WatchError> {
        // Subscribed before the newest cursor is read: an event committed in
        // between arrives live (or from the database, past that cursor).
        let live = self.live.subscribe();
        let newest_cursor = self.store.newest_cursor().await?;
        let after_cursor = match start {
            WatchStart::Now => newest_cursor,
            WatchStart::After(after_cursor) if after_cursor > newest_cursor => {
                return Err(WatchError::CursorBeyondEnd {
                    after_cursor,
                    newest_cursor,
                });
            }
            WatchStart::After(after_cursor) => after_cursor,
        };
        let scope = Scope::Namespace {
            filter,
            after_cursor,
        };
        Ok(self.spawn(namespace, scope, live))
    }

    fn spawn(
        &self,
        namespace: &str,
        scope: Scope,
        live: broadcast::Receiver<Arc<EventRecord>>,
    ) -> mpsc::Receiver<WatchItem> {
        let (sink, events) = mpsc::channel(WATCHER_QUEUE);
        let watcher = Watcher {
            store: self.store.clone(),
            namespace: namespace.to_owned(),
            scope,
            live,
            sink,
            shutdown: self.shutdown.clone(),
        };
        match self.watchers.clone() {
            Some(gauge) => {
                gauge.inc();
                tokio::spawn(async move {
                    watcher.run().await;
                    gauge.dec();
                });
            }
            None => {
                tokio::spawn(watcher.run());
            }
        }
        events
    }
}

/// What one watcher follows, and how far it got.
enum Scope {
    /// One run. `after_sequence` is the last sequence delivered (or asked
    /// to skip); `finished` says the run was terminal before the history was
    /// read, so the history is all there is unless it was retried since.
    Run {
        run_id: String,
        after_sequence: u64,
        finished: bool,
    },
    /// A namespace. `after_cursor` is the last cursor delivered (or asked to
    /// skip), or, once following live events, the last cursor seen on the
    /// broadcast: every event up to it has been considered.
    Namespace {
        filter: EventFilter,
        after_cursor: u64,
    },
}

/// What delivering an event left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Continue,
    /// The run finished, or the client went away.
    Stop,
}

struct Watcher {
    store: Arc<dyn Store>,
    namespace: String,
    scope: Scope,
    live: broadcast::Receiver<Arc<EventRecord>>,
    sink: mpsc::Sender<WatchItem>,
    shutdown: watch::Receiver<bool>,
}

impl Watcher {
    /// Follows until done; a failure ends the stream with its status (the
    /// API logs internal causes when it converts them).
    async fn run(mut self) {
        if let Err(error) = self.follow().await {
            self.end_with(error).await;
        }
    }

    /// Alternates between catching up from the database and following the
    /// broadcast, until the run finishes or the client goes away.
    async fn follow(&mut self) -> Result<(), WatchError> {
        loop {
            let (next, delivered) = self.catch_up().await?;
            if next == Next::Stop {
                return Ok(());
            }
            if let Scope::Run { finished, .. } = &mut self.scope {
                // The run was terminal when the watch began and nothing
                // follows the position asked for: that is the end. (History
                // that went on past a RUN_FINISHED means the run was retried
                // meanwhile: follow it.)
                if std::mem::take(finished) && !delivered {
                    return Ok(());
                }
            }
            if self.follow_live().await? == Next::Stop {
                return Ok(());
            }
        }
    }

    /// Delivers everything the database holds after the current position,
    /// page by page, until a page comes back short; says whether it
    /// delivered anything. A run's history ends the watch when its last
    /// event is RUN_FINISHED: an earlier one was followed by a retry.
    async fn catch_up(&mut self) -> Result<(Next, bool), WatchError> {
        let mut delivered = false;
        let mut ended = false;
        loop {
            let query = self.next_page();
            let page = self.store.list_events(&self.namespace, &query).await?;
            let complete = page.len() < PAGE_SIZE as usize;
            for event in page {
                ended = event.event_type == EventType::RunFinished;
                delivered = true;
                if self.deliver(Arc::new(event)).await? == Next::Stop {
                    return Ok((Next::Stop, delivered));
                }
            }
            if complete {
                let next = if ended && matches!(self.scope, Scope::Run { .. }) {
                    Next::Stop
                } else {
                    Next::Continue
                };
                return Ok((next, delivered));
            }
        }
    }

    /// Delivers live events until the watcher must go back to the database
    /// (it lagged, or a run's sequence jumped) or stop.
    async fn follow_live(&mut self) -> Result<Next, WatchError> {
        loop {
            let received = tokio::select! {
                received = self.live.recv() => received,
                _ = self.sink.closed() => return Ok(Next::Stop),
                _ = self.shutdown.wait_for(|stopped| *stopped) => {
                    return Err(WatchError::ShuttingDown);
                }
            };
            let event = match received {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        namespace = self.namespace,
                        missed,
                        "watcher lagged; reading on from the database"
                    );
                    return Ok(Next::Continue);
                }
                // Every sender is gone, so the server is stopping.
                Err(RecvError::Closed) => return Err(WatchError::ShuttingDown),
            };
            if event.namespace != self.namespace {
                continue;
            }
            match &mut self.scope {
                Scope::Run {
                    run_id,
                    after_sequence,
                    ..
                } => {
                    if event.run_id != *run_id || event.sequence <= *after_sequence {
                        continue;
                    }
                    // A run's sequences have no holes, so a jump means
                    // something was missed; the database has it.
                    if event.sequence != *after_sequence + 1 {
                        return Ok(Next::Continue);
                    }
                }
                Scope::Namespace {
                    filter,
                    after_cursor,
                } => {
                    if event.cursor <= *after_cursor {
                        continue;
                    }
                    if !filter.matches(&event) {
                        // Every event up to this one has been considered,
                        // so a later catch-up need not read them again.
                        *after_cursor = event.cursor;
                        continue;
                    }
                }
            }
            // A run's live RUN_FINISHED is its end at that moment; a later
            // retry is for a new watch to follow.
            let ended = matches!(self.scope, Scope::Run { .. })
                && event.event_type == EventType::RunFinished;
            if self.deliver(event).await? == Next::Stop || ended {
                return Ok(Next::Stop);
            }
        }
    }

    /// The next page of history after the current position.
    fn next_page(&self) -> EventQuery {
        match &self.scope {
            Scope::Run {
                run_id,
                after_sequence,
                ..
            } => EventQuery {
                position: EventPosition::AfterSequence {
                    run_id: run_id.clone(),
                    sequence: *after_sequence,
                },
                filter: EventFilter::default(),
                limit: PAGE_SIZE,
            },
            Scope::Namespace {
                filter,
                after_cursor,
            } => EventQuery {
                position: EventPosition::AfterCursor(*after_cursor),
                filter: filter.clone(),
                limit: PAGE_SIZE,
            },
        }
    }

    /// Sends one event to the client and advances the position. Waits while
    /// the client's queue is full: that is what a slow client costs, its own
    /// watcher only.
    async fn deliver(&mut self, event: Arc<EventRecord>) -> Result<Next, WatchError> {
        match &mut self.scope {
            Scope::Run { after_sequence, .. } => *after_sequence = event.sequence,
            Scope::Namespace { after_cursor, .. } => *after_cursor = event.cursor,
        }
        tokio::select! {
            sent = self.sink.send(Ok(event)) => {
                if sent.is_err() {
                    return Ok(Next::Stop);
                }
            }
            _ = self.shutdown.wait_for(|stopped| *stopped) => {
                return Err(WatchError::ShuttingDown);
            }
        }
        Ok(Next::Continue)
    }

    /// Ends the stream with an error if the client can take it; a client
    /// that stopped reading during a shutdown just sees the stream end.
    async fn end_with(&mut self, error: WatchError) {
        match self.sink.try_send(Err(error)) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(item)) => {
                tokio::select! {
                    _ = self.sink.send(item) => {}
                    _ = self.shutdown.wait_for(|stopped| *stopped) => {}
                }
            }
        }
    }
}
