//! Free TCP ports on 127.0.0.1 for processes under test.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

/// A port on 127.0.0.1 that was free a moment ago and that this test process has not
/// handed out before.
///
/// The port is found by binding port 0 and closing the socket again, so another process
/// could take it before the child binds it: the kernel hands out ephemeral ports in a
/// spread-out order, which makes that rare, and remembering what was handed out keeps the
/// tests of one binary (which run in parallel) from colliding with each other.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("cannot bind a port on 127.0.0.1: {e}"));
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no fresh free port on 127.0.0.1 after 100 tries");
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}
