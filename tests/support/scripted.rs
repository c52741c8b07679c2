//! An executor driven message by message, for tests of the protocol itself:
//! the test sends exactly what it wants and reads exactly what the server
//! answers, including how the stream ends.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};
use tributary_proto::v1 as pb;
use tributary_proto::v1::connect_request::Message as ToServer;
use tributary_proto::v1::connect_response::Message as FromServer;
use tributary_proto::v1::executor_service_client::ExecutorServiceClient;

use crate::Namespace;

/// A safety net for every read: far longer than anything a test waits for.
const READ_LIMIT: Duration = Duration::from_secs(20);

pub struct ScriptedExecutor {
    sender: mpsc::Sender<pb::ConnectRequest>,
    responses: Streaming<pb::ConnectResponse>,
    pub registered: pb::Registered,
}

/// A registration of one instance serving `handlers` with `capacity`.
pub fn registration(instance_id: &str, handlers: &[&str], capacity: u32) -> pb::Register {
    pb::Register {
        name: format!("scripted-{instance_id}"),
        instance_id: instance_id.to_owned(),
        handlers: handlers
            .iter()
            .map(|handler| (*handler).to_owned())
            .collect(),
        max_concurrent_attempts: capacity,
        ..pb::Register::default()
    }
}

impl ScriptedExecutor {
    /// Opens a stream in `namespace` and registers; panics unless the
    /// server answers `registered`.
    pub async fn connect(
        channel: Channel,
        namespace: &str,
        register: pb::Register,
    ) -> ScriptedExecutor {
        let (sender, receiver) = mpsc::channel(64);
        sender
            .send(pb::ConnectRequest {
                message: Some(ToServer::Register(register)),
            })
            .await
            .expect("queue register");
        let mut client =
            ExecutorServiceClient::with_interceptor(channel, Namespace::new(namespace))
                .max_decoding_message_size(usize::MAX);
        let mut responses = client
            .connect(ReceiverStream::new(receiver))
            .await
            .expect("stream opens")
            .into_inner();
        let registered = match tokio::time::timeout(READ_LIMIT, responses.message()).await {
            Ok(Ok(Some(pb::ConnectResponse {
                message: Some(FromServer::Registered(registered)),
            }))) => registered,
            other => panic!("expected registered, got {other:?}"),
        };
        ScriptedExecutor {
            sender,
            responses,
            registered,
        }
    }

    pub async fn send(&self, message: ToServer) {
        self.sender
            .send(pb::ConnectRequest {
                message: Some(message),
            })
            .await
            .expect("stream is open");
    }

    pub async fn complete(&self, attempt_id: &str, set_json: &str) {
        self.send(ToServer::Completed(pb::Completed {
            attempt_id: attempt_id.to_owned(),
            set_json: set_json.to_owned(),
            removed_keys: Vec::new(),
        }))
        .await;
    }

    pub async fn fail(&self, attempt_id: &str, message: &str) {
        self.send(ToServer::Failed(pb::Failed {
            attempt_id: attempt_id.to_owned(),
            message: message.to_owned(),
            non_retryable: false,
        }))
        .await;
    }

    /// The next message from the server; `Err` when the stream ended with a
    /// status, `Ok(None)` when it ended with OK.
    pub async fn next(&mut self) -> Result<Option<FromServer>, Status> {
        match tokio::time::timeout(READ_LIMIT, self.responses.message()).await {
            Ok(Ok(Some(response))) => Ok(response.message),
            Ok(Ok(None)) => Ok(None),
            Ok(Err(status)) => Err(status),
            Err(_) => panic!("nothing from the server within {READ_LIMIT:?}"),
        }
    }

    /// The next assignment, skipping heartbeat answers.
    pub async fn next_assign(&mut self) -> pb::Assign {
        loop {
            match self.next().await {
                Ok(Some(FromServer::Assign(assign))) => return assign,
                Ok(Some(FromServer::HeartbeatAck(_))) => {}
                other => panic!("expected an assignment, got {other:?}"),
            }
        }
    }

    /// The next result acknowledgement, skipping heartbeat answers.
    pub async fn next_ack(&mut self) -> pb::ResultAck {
        loop {
            match self.next().await {
                Ok(Some(FromServer::ResultAck(ack))) => return ack,
                Ok(Some(FromServer::HeartbeatAck(_))) => {}
                other => panic!("expected a result acknowledgement, got {other:?}"),
            }
        }
    }

    /// Reads until the stream ends and returns the status it ended with
    /// (OK when it ended cleanly).
    pub async fn end_status(&mut self) -> Status {
        loop {
            match self.next().await {
                Ok(Some(_)) => {}
                Ok(None) => return Status::ok(""),
                Err(status) => return status,
            }
        }
    }
}
