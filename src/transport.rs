//! Names the most common connection mistake, a URL whose scheme does not
//! match the server: `https://` against a plaintext server, or `http://`
//! against one speaking TLS. Shared by the CLI and the Rust SDK: the first
//! shows in the TLS handshake's error, the second is found by a probe,
//! because the HTTP/2 client only sees a connection that went away.

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

/// The HTTP/2 client preface and an empty SETTINGS frame: what a gRPC
/// client sends first on a plaintext connection.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Whether the server at an `http://` URL answers a plaintext HTTP/2
/// preface with a TLS record (an alert), i.e. expects TLS. Blocking, at most
/// about `timeout` per step; `false` when it cannot tell.
pub fn answers_with_tls(url: &str, timeout: std::time::Duration) -> bool {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};

    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = if authority
        .rsplit(':')
        .next()
        .is_some_and(|port| port.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let Some(address) = authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
    else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&address, timeout) else {
        return false;
    };
    if stream.set_read_timeout(Some(timeout)).is_err() || stream.write_all(H2_PREFACE).is_err() {
        return false;
    }
    let mut first = [0u8; 2];
    // A TLS record starts with its type (21 alert, 22 handshake) and the
    // major version 3; an HTTP/2 server starts with a SETTINGS frame.
    stream.read_exact(&mut first).is_ok() && matches!(first, [21 | 22, 3])
}

/// The message for an `http://` URL whose server expects TLS.
pub fn expects_tls_message(url: &str) -> String {
    format!("the server at {url} expects TLS: use https:// instead of http://")
}
