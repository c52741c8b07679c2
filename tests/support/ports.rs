//! Ports for server processes that tests kill and start again on the same
//! address.
//!
//! A port taken from the kernel (bind to port 0, read it, close) is free
//! only for a moment: while its server is down between a kill and a
//! restart, any other test binding port 0 may be handed it, and the restart
//! then fails to listen while a stranger answers on its address. These
//! ports come from below the kernel's ephemeral range (32768 and up by
//! default), one after another within a test process, so neither happens.

use std::sync::atomic::{AtomicU16, Ordering};

/// The first port handed out; the range below the ephemeral one.
const FIRST: u16 = 20_000;
/// How many ports each test process cycles through.
const SPAN: u16 = 1_000;

static NEXT: AtomicU16 = AtomicU16::new(0);

/// A port no other test of this process gets and the kernel does not hand
/// out for port 0, checked to be free now.
pub fn reserved_port() -> u16 {
    // Test processes running at the same time start apart.
    let first = FIRST + (std::process::id() % 10) as u16 * SPAN;
    for _ in 0..SPAN {
        let port = first + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {first}..{}", first + SPAN);
}
