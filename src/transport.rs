//! Names the most common connection mistake, a URL whose scheme does not
//! match the server: `https://` against a plaintext server, or `http://`
//! against one speaking TLS. Shared by the CLI and the Rust SDK.

use std::error::Error;

/// A message naming the mismatch when `error` (a connection or call error
/// for `url`) shows one, else `None`.
pub fn scheme_mismatch(url: &str, error: &(dyn Error + 'static)) -> Option<String> {
    let chain = error_chain(error);
    if url.starts_with("https://") {
        // rustls reading an HTTP/2 frame where a TLS record should be.
        if chain.contains("InvalidContentType") || chain.contains("corrupt message") {
            return Some(format!(
                "the server at {url} does not speak TLS: use http:// instead of https://"
            ));
        }
    } else if url.starts_with("http://")
        && (chain.contains("frame with invalid size")
            || chain.contains("invalid HTTP version")
            || chain.contains("frame header")
            || chain.contains("connection closed before")
            || chain.contains("peer closed connection")
            || chain.contains("reset by peer")
            || chain.contains("broken pipe")
            || chain.contains("protocol error"))
    {
        // A TLS server answers an HTTP/2 preface with an alert and closes.
        return Some(format!(
            "the server at {url} expects TLS (or is not a gRPC server): use https:// instead of http://"
        ));
    }
    None
}

/// Every message of an error's source chain, joined.
pub fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
