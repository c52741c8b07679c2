//! An executor that survives server restarts the way conformance/SPEC.md asks of an
//! SDK: it reconnects with backoff, re-registers with the attempts it still
//! runs (so the server can leave them with it), and resends results the
//! server has not acknowledged. Tests use it to check recovery without
//! re-running reclaimed attempts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_request::Message as ToServer;
use tributary_proto::v1::connect_response::Message as FromServer;
use tributary_proto::v1::executor_service_client::ExecutorServiceClient;

use crate::executor::{Assigned, Handler, Outcome};

/// Counters a test reads.
#[derive(Debug, Default)]
pub struct ResilientStats {
    /// How many times the handler started, per (run, task).
    pub executions: HashMap<(String, String), usize>,
    pub registrations: usize,
    /// Attempts reported as held when re-registering.
    pub reported_held: Vec<String>,
}

pub struct ResilientExecutor {
    pub stats: Arc<Mutex<ResilientStats>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    running: Mutex<HashMap<String, ()>>,
    /// Results sent but not acknowledged, by attempt.
    unacked: Mutex<HashMap<String, ToServer>>,
    stats: Arc<Mutex<ResilientStats>>,
}

impl ResilientExecutor {
    pub fn start(
        url: String,
        handlers: Vec<String>,
        capacity: u32,
        handler: Handler,
    ) -> ResilientExecutor {
        let stats = Arc::new(Mutex::new(ResilientStats::default()));
        let shared = Arc::new(Shared {
            running: Mutex::new(HashMap::new()),
            unacked: Mutex::new(HashMap::new()),
            stats: stats.clone(),
        });
        let (stop, stopped) = watch::channel(false);
        let instance_id = uuid::Uuid::now_v7().to_string();
        // Results go to whichever connection is current.
        let (results, mut results_receiver) = mpsc::channel::<ToServer>(1024);
        let task = tokio::spawn(async move {
            let mut stopped = stopped;
            loop {
                if *stopped.borrow() {
                    return;
                }
                let Ok(endpoint) = Endpoint::from_shared(url.clone()) else {
                    return;
                };
                let channel = match endpoint.connect().await {
                    Ok(channel) => channel,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let held: Vec<String> = shared
                    .running
                    .lock()
                    .expect("lock")
                    .keys()
                    .cloned()
                    .collect();
                let (outbound, requests) = mpsc::channel::<pb::ConnectRequest>(1024);
                let register = pb::ConnectRequest {
                    message: Some(ToServer::Register(pb::Register {
                        name: "resilient".into(),
                        instance_id: instance_id.clone(),
                        handlers: handlers.clone(),
                        max_concurrent_attempts: capacity,
                        held_attempt_ids: held.clone(),
                        ..pb::Register::default()
                    })),
                };
                if outbound.send(register).await.is_err() {
                    continue;
                }
                let mut client = ExecutorServiceClient::new(channel);
                let mut responses = match client.connect(ReceiverStream::new(requests)).await {
                    Ok(response) => response.into_inner(),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                {
                    let mut stats = shared.stats.lock().expect("lock");
                    stats.registrations += 1;
                    stats.reported_held.extend(held);
                }
                // Resend what the last server never acknowledged.
                let pending: Vec<ToServer> = shared
                    .unacked
                    .lock()
                    .expect("lock")
                    .values()
                    .cloned()
                    .collect();
                for message in pending {
                    let _ = outbound
                        .send(pb::ConnectRequest {
                            message: Some(message),
                        })
                        .await;
                }
                let alive = Arc::new(AtomicBool::new(true));
                loop {
                    tokio::select! {
                        response = responses.next() => {
                            let Some(Ok(response)) = response else { break };
                            match response.message {
                                Some(FromServer::Registered(registered)) => {
                                    let outbound = outbound.clone();
                                    let alive = alive.clone();
                                    let interval = Duration::from_millis(registered.heartbeat_interval_ms.max(1));
                                    tokio::spawn(async move {
                                        while alive.load(Ordering::SeqCst) {
                                            tokio::time::sleep(interval).await;
                                            let heartbeat = pb::ConnectRequest {
                                                message: Some(ToServer::Heartbeat(pb::Heartbeat::default())),
                                            };
                                            if outbound.send(heartbeat).await.is_err() {
                                                return;
                                            }
                                        }
                                    });
                                }
                                Some(FromServer::Assign(assign)) => {
                                    shared.running.lock().expect("lock").insert(assign.attempt_id.clone(), ());
                                    *shared
                                        .stats
                                        .lock()
                                        .expect("lock")
                                        .executions
                                        .entry((assign.run_id.clone(), assign.task_id.clone()))
                                        .or_default() += 1;
                                    let (_cancel, cancelled) = watch::channel(false);
                                    let assigned = Assigned {
                                        run_id: assign.run_id,
                                        task_id: assign.task_id,
                                        attempt_id: assign.attempt_id,
                                        attempt_number: assign.attempt_number,
                                        handler: assign.handler,
                                        input: serde_json::from_str(&assign.input_context_json).unwrap_or_default(),
                                        input_json: assign.input_context_json,
                                        cancelled,
                                    };
                                    let handler = handler.clone();
                                    let results = results.clone();
                                    let _ = outbound.send(pb::ConnectRequest {
                                        message: Some(ToServer::Started(pb::Started { attempt_id: assigned.attempt_id.clone() })),
                                    }).await;
                                    tokio::spawn(async move {
                                        let attempt_id = assigned.attempt_id.clone();
                                        let message = match handler(assigned).await {
                                            Outcome::Complete { set, removed } => ToServer::Completed(pb::Completed {
                                                attempt_id,
                                                set_json: set.to_string(),
                                                removed_keys: removed,
                                            }),
                                            Outcome::CompleteRaw(set_json) => ToServer::Completed(pb::Completed {
                                                attempt_id,
                                                set_json,
                                                removed_keys: vec![],
                                            }),
                                            Outcome::Fail { message, retryable } => ToServer::Failed(pb::Failed {
                                                attempt_id,
                                                message,
                                                non_retryable: !retryable,
                                            }),
                                            Outcome::HangUntilCancelled => return,
                                        };
                                        let _ = results.send(message).await;
                                    });
                                }
                                Some(FromServer::ResultAck(ack)) => {
                                    shared.unacked.lock().expect("lock").remove(&ack.attempt_id);
                                }
                                Some(FromServer::Cancel(cancel)) => {
                                    shared.running.lock().expect("lock").remove(&cancel.attempt_id);
                                }
                                _ => {}
                            }
                        }
                        result = results_receiver.recv() => {
                            let Some(message) = result else { return };
                            let attempt_id = match &message {
                                ToServer::Completed(completed) => completed.attempt_id.clone(),
                                ToServer::Failed(failed) => failed.attempt_id.clone(),
                                _ => String::new(),
                            };
                            shared.running.lock().expect("lock").remove(&attempt_id);
                            shared.unacked.lock().expect("lock").insert(attempt_id, message.clone());
                            let _ = outbound.send(pb::ConnectRequest { message: Some(message) }).await;
                        }
                        _ = stopped.changed() => return,
                    }
                }
                alive.store(false, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        ResilientExecutor { stats, stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
