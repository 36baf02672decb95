//! Network partitions on loopback with iptables, removed on drop.

use std::process::Command;

/// DROP rules cutting one address off from others; deleted again on drop.
#[derive(Debug)]
pub struct Partition {
    rules: Vec<[String; 2]>,
}

fn iptables(action: &str, src: &str, dst: &str) -> Result<(), String> {
    let out = Command::new("iptables")
        .args(["-w", action, "OUTPUT", "-s", src, "-d", dst, "-j", "DROP"])
        .output()
        .map_err(|e| format!("cannot run iptables (apt-get install iptables): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables {action} {src} -> {dst} failed: {}",
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
                p.rules.push([src.to_string(), dst.to_string()]);
            }
        }
        p
    }

    /// Removes the rules now.
    pub fn heal(&mut self) {
        for [src, dst] in self.rules.drain(..) {
            if let Err(e) = iptables("-D", &src, &dst) {
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
