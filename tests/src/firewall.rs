//! Network partitions on loopback with iptables, removed on drop.

use std::process::Command;

/// DROP rules cutting one address off from others, or one port off from everyone; deleted
/// again on drop.
#[derive(Debug)]
pub struct Partition {
    /// The match part of each rule (what follows `OUTPUT`, before `-j DROP`).
    rules: Vec<Vec<String>>,
}

fn iptables(action: &str, src: &str, dst: &str) -> Result<(), String> {
    let rule = ["-s", src, "-d", dst].map(String::from);
    iptables_rule(action, &rule)
}

fn iptables_rule(action: &str, rule: &[String]) -> Result<(), String> {
    let out = Command::new("iptables")
        .args(["-w", action, "OUTPUT"])
        .args(rule)
        .args(["-j", "DROP"])
        .output()
        .map_err(|e| format!("cannot run iptables (apt-get install iptables): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables {action} OUTPUT {} -j DROP failed: {}",
            rule.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Partition {
    /// Drops every packet between `isolated` and each of `others` (IP addresses), both ways.
    pub fn cut(isolated: &str, others: &[&str]) -> Partition {
        let mut p = Partition { rules: Vec::new() };
        for other in others {
            for (src, dst) in [(isolated, *other), (*other, isolated)] {
                iptables("-I", src, dst).unwrap_or_else(|e| panic!("{e}"));
                p.rules
                    .push(["-s", src, "-d", dst].map(String::from).to_vec());
            }
        }
        p
    }

    /// Black-holes TCP port `port` on 127.0.0.1: every packet to it and from it is dropped,
    /// established connections included, so its server runs (and its own outgoing calls,
    /// such as heartbeats, still work) but nobody reaches it.
    pub fn port(port: u16) -> Partition {
        let mut p = Partition { rules: Vec::new() };
        let port = port.to_string();
        for dir in ["--dport", "--sport"] {
            let rule: Vec<String> = ["-p", "tcp", "-d", "127.0.0.1", dir, &port]
                .map(String::from)
                .to_vec();
            iptables_rule("-I", &rule).unwrap_or_else(|e| panic!("{e}"));
            p.rules.push(rule);
        }
        p
    }

    /// Removes the rules now.
    pub fn heal(&mut self) {
        for rule in self.rules.drain(..) {
            if let Err(e) = iptables_rule("-D", &rule) {
                eprintln!("warning: {e}");
            }
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.heal();
    }
}
