//! Reads a request's namespace from the `x-tributary-namespace` metadata.

use tributary_core::{is_valid_identifier, shown};
use tributary_proto::{DEFAULT_NAMESPACE, NAMESPACE_METADATA_KEY};

use super::error::ApiError;

/// The namespace a request names, or `default` when it names none.
pub fn namespace_of<T>(request: &tonic::Request<T>) -> Result<String, ApiError> {
    let mut values = request.metadata().get_all(NAMESPACE_METADATA_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(DEFAULT_NAMESPACE.to_owned());
    };
    // Two values would let a proxy and the server each read a different one.
    if values.next().is_some() {
        return Err(ApiError::InvalidArgument(format!(
            "{NAMESPACE_METADATA_KEY} metadata is given more than once; give one namespace"
        )));
    }
    let text = value.to_str().map_err(|_| {
        ApiError::InvalidArgument(format!(
            "{NAMESPACE_METADATA_KEY} metadata is not ASCII text"
        ))
    })?;
    if !is_valid_identifier(text) {
        return Err(ApiError::InvalidArgument(format!(
            "invalid namespace {} in {NAMESPACE_METADATA_KEY} metadata: must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter",
            shown(text)
        )));
    }
    Ok(text.to_owned())
}
