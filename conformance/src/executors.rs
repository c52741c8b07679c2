//! `ExecutorService.ListExecutors` with the value-reference counters the
//! `references`, `reference_fetch` and `mixed_fleet` scenarios read.
//!
//! The counters (`ExecutorInfo.context_bytes_sent = 9` and
//! `values_sent_by_reference = 10`) come with value references and are not
//! in this branch's `proto/tributary/v1/executor.proto` yet; this module
//! decodes the response with its own message types, which carry them at
//! those tags. A server that does not send them reads as zeros. Once the
//! protos have them, these types can give way to the generated ones.

use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

/// `ListExecutorsRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListExecutorsRequest {}

/// `ListExecutorsResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListExecutorsResponse {
    /// The connected executors.
    #[prost(message, repeated, tag = "1")]
    pub executors: Vec<ExecutorInfo>,
}

/// `ExecutorInfo`, with the counters of value references.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecutorInfo {
    /// The id given at registration.
    #[prost(string, tag = "1")]
    pub executor_id: String,
    /// The executor's name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// The executor's instance id.
    #[prost(string, tag = "3")]
    pub instance_id: String,
    /// Its maximum attempts in flight.
    #[prost(uint32, tag = "5")]
    pub max_concurrent_attempts: u32,
    /// Attempts in flight on it now.
    #[prost(string, repeated, tag = "6")]
    pub in_flight_attempt_ids: Vec<String>,
    /// The labels it registered.
    #[prost(map = "string, string", tag = "7")]
    pub labels: std::collections::HashMap<String, String>,
    /// Bytes of context values sent to it by value on this connection: the
    /// length of every `assign.input_context_json` plus every
    /// `values.values[].value_json`.
    #[prost(uint64, tag = "9")]
    pub context_bytes_sent: u64,
    /// Context values sent to it by reference on this connection (entries
    /// of `assign.references`).
    #[prost(uint64, tag = "10")]
    pub values_sent_by_reference: u64,
}

/// Lists the executors connected in `namespace`.
pub async fn list(channel: Channel, namespace: &str) -> Result<Vec<ExecutorInfo>, String> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|error| format!("ListExecutors: {error}"))?;
    let mut request = tonic::Request::new(ListExecutorsRequest {});
    request.metadata_mut().insert(
        tributary_proto::NAMESPACE_METADATA_KEY,
        namespace
            .parse()
            .map_err(|_| format!("invalid namespace {namespace:?}"))?,
    );
    let response: tonic::Response<ListExecutorsResponse> = grpc
        .unary(
            request,
            PathAndQuery::from_static("/tributary.v1.ExecutorService/ListExecutors"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .map_err(|status| format!("ListExecutors: {}", status.message()))?;
    Ok(response.into_inner().executors)
}
