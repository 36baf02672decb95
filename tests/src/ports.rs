//! Free TCP ports on 127.0.0.1 for processes under test.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

/// Ports are picked below the kernel's ephemeral range (`ip_local_port_range`, 32768 and up
/// by default): a port from that range can be taken at any moment as the source port of
/// some outgoing connection, and a server started on it then fails with "Address already
/// in use".
const LOWEST: u16 = 10_000;

/// A port on 127.0.0.1 that was free a moment ago and that this test process has not
/// handed out before.
///
/// A random port between 10000 and the start of the ephemeral range that binds now; another
/// process could still take it before the child binds it, which is rare, and remembering
/// what was handed out keeps the tests of one binary (which run in parallel) from colliding
/// with each other.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let highest = ephemeral_start().saturating_sub(1).max(LOWEST + 1000);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(1)
        ^ (u64::from(std::process::id()) << 20);
    for _ in 0..1000 {
        // xorshift: cheap randomness without a dependency.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = LOWEST + (seed % u64::from(highest - LOWEST)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no fresh free port on 127.0.0.1 between {LOWEST} and {highest} after 1000 tries");
}

/// The first port of the kernel's ephemeral range (32768 if it cannot be read).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}
