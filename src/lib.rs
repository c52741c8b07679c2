//! `tributary-proto`: the generated code of the `tributary.v1` gRPC API and a
//! few wire helpers shared by the server and the Rust SDK, among them the
//! conversions between `WorkflowDefinition` messages and
//! `tributary_core::WorkflowDefinition` (`From` in both directions).
//!
//! Nothing here is a domain model: the server converts these messages into its
//! own types at the API edge, and the engine never sees them.

mod definition;
pub mod transport;

/// The `tributary.v1` package: messages, clients and servers.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("tributary.v1");
}

/// The encoded `FileDescriptorSet` of every `.proto` file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tributary_descriptor.bin"));

/// The metadata key that names a request's namespace.
pub const NAMESPACE_METADATA_KEY: &str = "x-tributary-namespace";

/// The namespace used when a request names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Converts milliseconds since the Unix epoch into a protobuf `Timestamp`.
pub fn timestamp_from_unix_ms(unix_ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: unix_ms.div_euclid(1000),
        nanos: (unix_ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Converts a protobuf `Timestamp` into milliseconds since the Unix epoch.
pub fn unix_ms_from_timestamp(timestamp: &prost_types::Timestamp) -> i64 {
    timestamp.seconds * 1000 + i64::from(timestamp.nanos) / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_including_before_the_epoch() {
        for unix_ms in [0, 1, 999, 1000, 1_764_000_000_123, -1, -999, -1001] {
            assert_eq!(
                unix_ms_from_timestamp(&timestamp_from_unix_ms(unix_ms)),
                unix_ms
            );
        }
        assert_eq!(timestamp_from_unix_ms(-1).nanos, 999_000_000);
    }
}
