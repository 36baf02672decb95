//! Per-method RPC counters and latency histograms, for the `/metrics` endpoint.
//!
//! Each server keeps a [`MethodTable`] in its [`ServerStats`](crate::ServerStats); every
//! client in the process shares [`client_metrics`]. A table has one lazily created slot per
//! method number (no lock after the first call of a method), so recording a call is a
//! few relaxed atomic adds. Method numbers outside the table's range share one `other` slot.

use std::sync::OnceLock;
use std::time::Duration;
use tessera_metrics::{Counter, Encoder, Histogram, Kind};
use tessera_proto::{Method, Status};

/// Service groups (the high byte of a method number) with a slot of their own.
const GROUPS: usize = 8;
/// Methods per group with a slot of their own.
const PER_GROUP: usize = 32;

/// Transport statuses that are errors, in wire order (`Ok` = 0 is not one).
const STATUSES: [(Status, &str); 5] = [
    (Status::UnknownMethod, "unknown_method"),
    (Status::BadRequest, "bad_request"),
    (Status::DeadlineExceeded, "deadline_exceeded"),
    (Status::Unavailable, "unavailable"),
    (Status::Internal, "internal"),
];

/// How a client call failed, as a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientErrorKind {
    Connect = 0,
    Auth,
    Timeout,
    ConnectionClosed,
    UnknownMethod,
    BadRequest,
    Unavailable,
    Internal,
    Protocol,
}

const CLIENT_ERRORS: [&str; 9] = [
    "connect",
    "auth",
    "timeout",
    "connection_closed",
    "unknown_method",
    "bad_request",
    "unavailable",
    "internal",
    "protocol",
];

/// Counters of one method.
#[derive(Debug)]
pub struct MethodStats {
    /// Calls finished (any outcome).
    pub calls: Counter,
    /// Failed calls by error: transport statuses on a server, [`ClientErrorKind`] on a client.
    errors: [Counter; 9],
    /// Time from request read to response queued (server), or from call to reply (client).
    pub latency: Histogram,
    /// Frame bytes received (headers, bodies and payloads).
    pub bytes_in: Counter,
    /// Frame bytes sent.
    pub bytes_out: Counter,
    /// Client calls given up on before their reply arrived (timed out, or dropped by a
    /// caller that no longer needed them): whatever the peer answered was never read.
    pub withdrawn: Counter,
}

impl MethodStats {
    const fn new() -> Self {
        Self {
            calls: Counter::new(),
            errors: [const { Counter::new() }; 9],
            latency: Histogram::new(),
            bytes_in: Counter::new(),
            bytes_out: Counter::new(),
            withdrawn: Counter::new(),
        }
    }

    /// Records one finished call on a server.
    pub fn server_call(&self, status: Status, took: Duration, bytes_in: u64, bytes_out: u64) {
        self.calls.inc();
        self.latency.observe(took);
        self.bytes_in.add(bytes_in);
        self.bytes_out.add(bytes_out);
        if status != Status::Ok {
            self.errors[(status as usize).saturating_sub(1).min(4)].inc();
        }
    }

    /// Records one finished call on a client.
    pub fn client_call(
        &self,
        error: Option<ClientErrorKind>,
        took: Duration,
        bytes_out: u64,
        bytes_in: u64,
    ) {
        self.calls.inc();
        self.latency.observe(took);
        self.bytes_in.add(bytes_in);
        self.bytes_out.add(bytes_out);
        if let Some(k) = error {
            self.errors[k as usize].inc();
        }
    }
}

/// One [`MethodStats`] per method number.
#[derive(Debug)]
pub struct MethodTable {
    slots: [OnceLock<(Method, MethodStats)>; GROUPS * PER_GROUP],
    other: MethodStats,
}

impl Default for MethodTable {
    fn default() -> Self {
        Self::new()
    }
}

impl MethodTable {
    /// An empty table (usable in statics).
    pub const fn new() -> Self {
        Self {
            slots: [const { OnceLock::new() }; GROUPS * PER_GROUP],
            other: MethodStats::new(),
        }
    }

    /// The counters of `method`.
    pub fn get(&self, method: Method) -> &MethodStats {
        let (group, n) = (usize::from(method.0 >> 8), usize::from(method.0 & 0xff));
        if group >= GROUPS || n >= PER_GROUP {
            return &self.other;
        }
        &self.slots[group * PER_GROUP + n]
            .get_or_init(|| (method, MethodStats::new()))
            .1
    }

    fn used(&self) -> Vec<(String, &MethodStats)> {
        let mut v: Vec<(String, &MethodStats)> = self
            .slots
            .iter()
            .filter_map(|s| s.get())
            .map(|(m, s)| (label(*m), s))
            .collect();
        if self.other.calls.get() > 0 {
            v.push(("other".to_string(), &self.other));
        }
        v
    }

    /// Renders the table's families as `tessera_rpc_<side>_...` (`side` is "server" or
    /// "client").
    pub fn render(&self, e: &mut Encoder, side: &str) {
        let used = self.used();
        let (who, what) = if side == "server" {
            (
                "handled by this server",
                "Transport-level failures answered",
            )
        } else {
            ("made by this process", "Failed calls made")
        };
        let name = format!("tessera_rpc_{side}_requests_total");
        e.family(&name, Kind::Counter, &format!("RPCs {who}, by method."));
        for (m, s) in &used {
            e.sample(&name, &[("method", m)], s.calls.get());
        }
        let name = format!("tessera_rpc_{side}_errors_total");
        let (label_name, labels): (&str, Vec<&str>) = if side == "server" {
            ("status", STATUSES.iter().map(|(_, n)| *n).collect())
        } else {
            ("kind", CLIENT_ERRORS.to_vec())
        };
        e.family(
            &name,
            Kind::Counter,
            &format!("{what}, by method and {label_name}."),
        );
        for (m, s) in &used {
            for (i, l) in labels.iter().enumerate() {
                let n = s.errors[i].get();
                if n > 0 {
                    e.sample(&name, &[("method", m), (label_name, l)], n);
                }
            }
        }
        let name = format!("tessera_rpc_{side}_request_duration_seconds");
        let help = if side == "server" {
            "Time from reading a request to queueing its response, by method."
        } else {
            "Time from starting a call to its reply or failure (connecting included), by method."
        };
        e.family(&name, Kind::Histogram, help);
        for (m, s) in &used {
            e.histogram(&name, &[("method", m)], &s.latency.snapshot());
        }
        let name = format!("tessera_rpc_{side}_received_bytes_total");
        e.family(
            &name,
            Kind::Counter,
            "Frame bytes received (header, body and payload), by method.",
        );
        for (m, s) in &used {
            e.sample(&name, &[("method", m)], s.bytes_in.get());
        }
        let name = format!("tessera_rpc_{side}_sent_bytes_total");
        e.family(
            &name,
            Kind::Counter,
            "Frame bytes sent (header, body and payload), by method.",
        );
        for (m, s) in &used {
            e.sample(&name, &[("method", m)], s.bytes_out.get());
        }
        if side == "client" {
            let name = "tessera_rpc_client_withdrawn_total";
            e.family(
                name,
                Kind::Counter,
                "Calls given up on before their reply arrived (timed out, or no longer \
                 needed), whose replies were never read, by method.",
            );
            for (m, s) in &used {
                e.sample(name, &[("method", m)], s.withdrawn.get());
            }
        }
    }
}

fn label(m: Method) -> String {
    match m.name() {
        Some(n) => n.to_string(),
        None => format!("{:#06x}", m.0),
    }
}

static CLIENT: MethodTable = MethodTable::new();

/// The calls made by every [`Client`](crate::Client) of this process.
pub fn client_metrics() -> &'static MethodTable {
    &CLIENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_get_their_own_slot_and_render() {
        let t = MethodTable::new();
        t.get(Method::PUT_SHARD)
            .server_call(Status::Ok, Duration::from_millis(2), 100, 40);
        t.get(Method::PUT_SHARD)
            .server_call(Status::Internal, Duration::from_millis(1), 10, 32);
        t.get(Method(0x7777))
            .server_call(Status::Ok, Duration::from_millis(1), 1, 1);
        assert_eq!(t.get(Method::PUT_SHARD).calls.get(), 2);
        assert_eq!(t.get(Method::GET_SHARD).calls.get(), 0);
        let mut e = Encoder::new();
        t.render(&mut e, "server");
        let text = e.finish();
        assert!(text.contains("tessera_rpc_server_requests_total{method=\"put-shard\"} 2\n"));
        assert!(text.contains("tessera_rpc_server_requests_total{method=\"other\"} 1\n"));
        assert!(text.contains(
            "tessera_rpc_server_errors_total{method=\"put-shard\",status=\"internal\"} 1\n"
        ));
        assert!(
            text.contains("tessera_rpc_server_received_bytes_total{method=\"put-shard\"} 110\n")
        );
        assert!(text.contains(
            "tessera_rpc_server_request_duration_seconds_count{method=\"put-shard\"} 2\n"
        ));
    }
}
