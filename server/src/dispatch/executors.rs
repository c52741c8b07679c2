//! Connected executors: their handlers, labels, capacity and in-flight
//! attempts, and the choice of executor for a task (least loaded first,
//! among those with the labels it requires).
//!
//! Invariant: an executor never holds more in-flight attempts than its
//! capacity. An attempt stays in flight (holding its slot) until the
//! executor reports its end or the stream closes, even after a timeout or a
//! cancellation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch};

use tributary_core::{Labels, labels_satisfy};

use super::held_values::{HeldValues, ValueName, WireInput};
use super::ready_queue::HandlerKey;
use crate::engine::run::Assignment;
use crate::engine::run::ResultDisposition;

/// A message from the server to an executor.
#[derive(Debug, Clone)]
pub enum ExecutorCommand {
    Registered {
        executor_id: String,
    },
    Assign {
        run_id: String,
        workflow_name: String,
        assignment: Box<Assignment>,
        /// The input as sent, filled in when the Assign is sent.
        input: WireInput,
    },
    /// The answer to `fetch_values`: the values found, in the order asked.
    Values {
        run_id: String,
        values: Vec<(ValueName, std::sync::Arc<RawValue>)>,
    },
    /// Drop what is kept of the run's values.
    ForgetRun {
        run_id: String,
    },
    Cancel {
        attempt_id: String,
        reason: String,
    },
    ResultAck {
        attempt_id: String,
        answer: ResultAnswer,
    },
    HeartbeatAck,
    /// End the stream with this status; nothing follows it.
    Close(StreamEnd),
}

/// Why the server ends an executor's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// Nothing was heard from the executor for this many milliseconds.
    LeaseExpired { lease_timeout_ms: u64 },
    /// The executor broke the protocol; the message says how.
    ProtocolViolation(String),
    /// The executor sent more than its share while the server was busy.
    Flooded,
    /// The executor sent more than a limit allows (a message over the
    /// message limit); the message names the limit and the excess.
    OverLimit(String),
}

/// What became of a result, as its executor is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultAnswer {
    /// Committed, now or by an earlier copy.
    Accepted,
    /// The attempt is no longer current; nothing changed.
    Stale,
    /// Refused for its content; the attempt is recorded as failed with this
    /// reason.
    Rejected(String),
    /// The executor instance does not hold the attempt (or no such attempt
    /// exists in its namespace); nothing changed.
    NotHeld,
}

impl From<ResultDisposition> for ResultAnswer {
    fn from(disposition: ResultDisposition) -> ResultAnswer {
        match disposition {
            ResultDisposition::Accepted => ResultAnswer::Accepted,
            ResultDisposition::Stale => ResultAnswer::Stale,
        }
    }
}

/// What an executor said in its `Register`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorRegistration {
    pub name: String,
    pub instance_id: String,
    pub handlers: Vec<String>,
    pub capacity: u32,
    pub labels: BTreeMap<String, String>,
    /// Attempts the executor still runs from before a reconnect.
    pub held_attempt_ids: Vec<String>,
    /// Bytes of context values the executor keeps to be referenced.
    pub value_cache_bytes: u64,
}

#[derive(Debug)]
pub struct Executor {
    pub id: String,
    pub namespace: String,
    pub registration: ExecutorRegistration,
    pub capacity: u32,
    pub in_flight: BTreeSet<String>,
    pub connected_at_ms: i64,
    /// Connection order, the last tie-breaker of the least-loaded choice.
    pub serial: u64,
    pub outbound: mpsc::Sender<ExecutorCommand>,
    /// When the executor was last heard from; its lease runs from here.
    pub last_heard: LastHeard,
    /// Dropping this ends the executor's request stream on the server side.
    pub stream_guard: watch::Sender<bool>,
    /// The context values this connection holds.
    pub held: HeldValues,
}

impl Executor {
    pub fn free_slots(&self) -> usize {
        (self.capacity as usize).saturating_sub(self.in_flight.len())
    }

    /// Whether the executor has the labels a task requires (`None`: none).
    pub fn has_labels(&self, required: Option<&Labels>) -> bool {
        required.is_none_or(|required| labels_satisfy(&self.registration.labels, required))
    }
}

/// The server's side of an executor's stream, as the coordinator holds it.
pub struct StreamHandles {
    pub outbound: mpsc::Sender<ExecutorCommand>,
    /// Dropping this ends the executor's request stream on the server side.
    pub stream_guard: watch::Sender<bool>,
    pub last_heard: LastHeard,
}

/// When an executor was last heard from, in milliseconds since the epoch.
/// The stream's reader writes it on every message, and it keeps doing so
/// while the coordinator waits for the database, so that a database outage
/// never costs an executor its lease.
#[derive(Debug, Clone, Default)]
pub struct LastHeard(Arc<AtomicI64>);

impl LastHeard {
    pub fn new(now_ms: i64) -> LastHeard {
        LastHeard(Arc::new(AtomicI64::new(now_ms)))
    }

    pub fn heard_at(&self, now_ms: i64) {
        self.0.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct ExecutorRegistry {
    executors: HashMap<String, Executor>,
    /// The executors serving each handler. A plain list of one shared id:
    /// an executor may serve 100,000 handlers, and a set per handler would
    /// cost a tree node each.
    by_handler: HashMap<HandlerKey, Vec<Arc<str>>>,
    next_serial: u64,
}

impl ExecutorRegistry {
    pub fn add(
        &mut self,
        id: String,
        namespace: String,
        registration: ExecutorRegistration,
        stream: StreamHandles,
        now_ms: i64,
    ) {
        let shared_id: Arc<str> = Arc::from(id.as_str());
        for handler in &registration.handlers {
            let ids = self
                .by_handler
                .entry(HandlerKey {
                    namespace: namespace.clone(),
                    handler: handler.clone(),
                })
                .or_default();
            if !ids.iter().any(|known| **known == *id) {
                ids.push(shared_id.clone());
            }
        }
        self.next_serial += 1;
        let held = HeldValues::new(registration.value_cache_bytes);
        let executor = Executor {
            id: id.clone(),
            namespace,
            capacity: registration.capacity,
            registration,
            in_flight: BTreeSet::new(),
            connected_at_ms: now_ms,
            serial: self.next_serial,
            outbound: stream.outbound,
            last_heard: stream.last_heard,
            stream_guard: stream.stream_guard,
            held,
        };
        self.executors.insert(id, executor);
    }

    /// Removes an executor and returns it (with the attempts it held).
    pub fn remove(&mut self, id: &str) -> Option<Executor> {
        let executor = self.executors.remove(id)?;
        for handler in &executor.registration.handlers {
            let key = HandlerKey {
                namespace: executor.namespace.clone(),
                handler: handler.clone(),
            };
            if let Some(ids) = self.by_handler.get_mut(&key) {
                ids.retain(|known| &**known != id);
                if ids.is_empty() {
                    self.by_handler.remove(&key);
                }
            }
        }
        // An executor with many handlers grew the index; give the memory
        // back when it leaves.
        if self.by_handler.capacity() > 4 * self.by_handler.len() + 1024 {
            self.by_handler.shrink_to_fit();
        }
        Some(executor)
    }

    pub fn get(&self, id: &str) -> Option<&Executor> {
        self.executors.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Executor> {
        self.executors.get_mut(id)
    }

    /// The executor serving `key` with the `required` labels, a free slot
    /// and the lowest load (in-flight / capacity), ties to the fewest in
    /// flight, then to the oldest connection.
    pub fn least_loaded(&self, key: &HandlerKey, required: Option<&Labels>) -> Option<&Executor> {
        self.by_handler
            .get(key)?
            .iter()
            .filter_map(|id| self.executors.get(&**id))
            .filter(|executor| executor.free_slots() > 0 && executor.has_labels(required))
            .min_by(|a, b| {
                let load_a = a.in_flight.len() as u64 * u64::from(b.capacity);
                let load_b = b.in_flight.len() as u64 * u64::from(a.capacity);
                load_a
                    .cmp(&load_b)
                    .then(a.in_flight.len().cmp(&b.in_flight.len()))
                    .then(a.serial.cmp(&b.serial))
            })
    }

    /// The executors serving `key`, whatever their free slots.
    pub fn serving(&self, key: &HandlerKey) -> Vec<&Executor> {
        self.by_handler
            .get(key)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.executors.get(&**id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether any connected executor serves `key` with the `required`
    /// labels, whatever its free slots.
    pub fn serves(&self, key: &HandlerKey, required: Option<&Labels>) -> bool {
        match required {
            None => self.by_handler.contains_key(key),
            Some(_) => self.by_handler.get(key).is_some_and(|ids| {
                ids.iter()
                    .filter_map(|id| self.executors.get(&**id))
                    .any(|executor| executor.has_labels(required))
            }),
        }
    }

    /// Every handler some executor serves.
    pub fn handler_keys(&self) -> Vec<HandlerKey> {
        self.by_handler.keys().cloned().collect()
    }

    /// The namespace of each connected executor, one entry per executor.
    pub fn namespaces(&self) -> impl Iterator<Item = String> + '_ {
        self.executors
            .values()
            .map(|executor| executor.namespace.clone())
    }

    /// Executors of a namespace, oldest connection first.
    /// How many executors of `namespace` are connected.
    pub fn count_in_namespace(&self, namespace: &str) -> usize {
        self.executors
            .values()
            .filter(|executor| executor.namespace == namespace)
            .count()
    }

    pub fn in_namespace(&self, namespace: &str) -> Vec<&Executor> {
        let mut executors: Vec<&Executor> = self
            .executors
            .values()
            .filter(|executor| executor.namespace == namespace)
            .collect();
        executors.sort_by_key(|executor| executor.serial);
        executors
    }

    /// Forgets the run's values on every connection; returns the
    /// connections that held some.
    pub fn forget_run_values(&mut self, run_id: &str) -> Vec<String> {
        self.executors
            .values_mut()
            .filter_map(|executor| {
                executor
                    .held
                    .forget_run(run_id)
                    .then(|| executor.id.clone())
            })
            .collect()
    }

    pub fn ids(&self) -> Vec<String> {
        self.executors.keys().cloned().collect()
    }

    /// Checks the capacity invariant; a violation is a bug worth a loud log.
    /// Which of `assigned_to`, the executors just given attempts, now hold
    /// more than their capacity. Only they can break the invariant: an
    /// executor that lowered its capacity below what it holds (a drain) keeps
    /// its attempts and simply gets no more.
    pub fn over_capacity<'a>(
        &self,
        assigned_to: impl IntoIterator<Item = &'a str>,
    ) -> Vec<&'a str> {
        assigned_to
            .into_iter()
            .filter(|id| {
                self.executors
                    .get(*id)
                    .is_some_and(|executor| executor.in_flight.len() > executor.capacity as usize)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(handlers: &[&str], capacity: u32) -> ExecutorRegistration {
        ExecutorRegistration {
            name: "test".into(),
            instance_id: "instance".into(),
            handlers: handlers.iter().map(|h| (*h).into()).collect(),
            capacity,
            labels: BTreeMap::new(),
            held_attempt_ids: Vec::new(),
            value_cache_bytes: 0,
        }
    }

    fn key(handler: &str) -> HandlerKey {
        HandlerKey {
            namespace: "default".into(),
            handler: handler.into(),
        }
    }

    #[test]
    fn least_loaded_relative_to_capacity_and_only_with_free_slots() {
        let mut registry = ExecutorRegistry::default();
        let (sender, _receiver) = mpsc::channel(8);
        registry.add(
            "small".into(),
            "default".into(),
            registration(&["h"], 1),
            StreamHandles {
                outbound: sender.clone(),
                stream_guard: watch::channel(false).0,
                last_heard: LastHeard::default(),
            },
            0,
        );
        registry.add(
            "big".into(),
            "default".into(),
            registration(&["h"], 4),
            StreamHandles {
                outbound: sender.clone(),
                stream_guard: watch::channel(false).0,
                last_heard: LastHeard::default(),
            },
            0,
        );
        registry.add(
            "other".into(),
            "default".into(),
            registration(&["x"], 4),
            StreamHandles {
                outbound: sender,
                stream_guard: watch::channel(false).0,
                last_heard: LastHeard::default(),
            },
            0,
        );
        assert_eq!(
            registry
                .least_loaded(&key("h"), None)
                .map(|executor| executor.id.as_str()),
            Some("small"),
            "oldest of equal load"
        );
        registry
            .get_mut("small")
            .expect("known")
            .in_flight
            .insert("a1".into());
        assert_eq!(
            registry
                .least_loaded(&key("h"), None)
                .map(|executor| executor.id.as_str()),
            Some("big")
        );
        for attempt in ["a2", "a3", "a4"] {
            registry
                .get_mut("big")
                .expect("known")
                .in_flight
                .insert(attempt.into());
        }
        // big is at 3/4 and small is full.
        assert_eq!(
            registry
                .least_loaded(&key("h"), None)
                .map(|executor| executor.id.as_str()),
            Some("big")
        );
        registry
            .get_mut("big")
            .expect("known")
            .in_flight
            .insert("a5".into());
        assert_eq!(
            registry
                .least_loaded(&key("h"), None)
                .map(|executor| executor.id.as_str()),
            None
        );
        assert_eq!(
            registry
                .least_loaded(&key("nobody"), None)
                .map(|executor| executor.id.as_str()),
            None
        );
        assert!(registry.over_capacity(["small", "big", "other"]).is_empty());
        // A drain lowers the capacity below what is held; that breaks
        // nothing until the executor is assigned more.
        if let Some(big) = registry.get_mut("big") {
            big.capacity = 0;
        }
        assert_eq!(
            registry
                .least_loaded(&key("h"), None)
                .map(|e| e.id.as_str()),
            None
        );
        let removed = registry.remove("big").expect("was there");
        assert_eq!(removed.in_flight.len(), 4);
        assert_eq!(
            registry
                .least_loaded(&key("h"), None)
                .map(|executor| executor.id.as_str()),
            None
        );
    }

    #[test]
    fn handlers_are_per_namespace() {
        let mut registry = ExecutorRegistry::default();
        let (sender, _receiver) = mpsc::channel(8);
        registry.add(
            "e".into(),
            "team-a".into(),
            registration(&["h"], 1),
            StreamHandles {
                outbound: sender,
                stream_guard: watch::channel(false).0,
                last_heard: LastHeard::default(),
            },
            0,
        );
        assert_eq!(
            registry
                .least_loaded(&key("h"), None)
                .map(|executor| executor.id.as_str()),
            None
        );
        let team_a = HandlerKey {
            namespace: "team-a".into(),
            handler: "h".into(),
        };
        assert_eq!(
            registry
                .least_loaded(&team_a, None)
                .map(|executor| executor.id.as_str()),
            Some("e")
        );
    }

    #[test]
    fn a_task_requiring_labels_goes_only_to_executors_with_them() {
        let mut registry = ExecutorRegistry::default();
        let (sender, _receiver) = mpsc::channel(8);
        for (id, labels) in [
            ("plain", vec![]),
            ("gpu-us", vec![("gpu", "true"), ("region", "us")]),
            ("gpu-eu", vec![("gpu", "true"), ("region", "eu")]),
        ] {
            let mut registration = registration(&["h"], 1);
            registration.labels = labels
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect();
            registry.add(
                id.into(),
                "default".into(),
                registration,
                StreamHandles {
                    outbound: sender.clone(),
                    stream_guard: watch::channel(false).0,
                    last_heard: LastHeard::default(),
                },
                0,
            );
        }
        let chosen = |registry: &ExecutorRegistry, required: &[(&str, &str)]| {
            let required: Labels = required
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect();
            registry
                .least_loaded(&key("h"), Some(&required))
                .map(|executor| executor.id.clone())
        };
        assert_eq!(
            registry
                .least_loaded(&key("h"), None)
                .map(|executor| executor.id.as_str()),
            Some("plain"),
            "a task without labels goes to any executor"
        );
        assert_eq!(
            chosen(&registry, &[("gpu", "true")]).as_deref(),
            Some("gpu-us")
        );
        assert_eq!(
            chosen(&registry, &[("region", "eu")]).as_deref(),
            Some("gpu-eu")
        );
        assert_eq!(chosen(&registry, &[("region", "ap")]), None);
        assert!(!registry.serves(
            &key("h"),
            Some(&[("region".to_owned(), "ap".to_owned())].into())
        ));
        assert!(registry.serves(
            &key("h"),
            Some(&[("region".to_owned(), "eu".to_owned())].into())
        ));
        registry
            .get_mut("gpu-eu")
            .expect("known")
            .in_flight
            .insert("a1".into());
        assert_eq!(
            chosen(&registry, &[("region", "eu")]),
            None,
            "the only executor with the labels is full; the others may not take it"
        );
    }
}
