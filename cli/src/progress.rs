//! Progress of long admin commands (`fsck --deep`, `repair`, `drain`, `gc`, `rebalance`,
//! `dump`, `load`): on a terminal a bar rewritten in place; otherwise plain lines, one per
//! change, so logs and pipes read well. `--json` output is never mixed with it (fsck's goes to stderr, and only to a
//! terminal).

use std::io::{IsTerminal, Write};

const WIDTH: usize = 30;

/// Where a command's progress goes.
#[derive(Debug)]
pub struct Progress {
    /// stderr (and only on a terminal) instead of stdout.
    to_stderr: bool,
    tty: bool,
    last: String,
}

impl Progress {
    /// Progress on stdout: a bar on a terminal, plain lines otherwise.
    pub fn lines() -> Progress {
        Progress {
            to_stderr: false,
            tty: std::io::stdout().is_terminal(),
            last: String::new(),
        }
    }

    /// Progress on stderr, shown only on a terminal (the command's stdout is its report).
    pub fn terminal_only() -> Progress {
        Progress {
            to_stderr: true,
            tty: std::io::stderr().is_terminal(),
            last: String::new(),
        }
    }

    /// Shows `what`, with a bar when `done` of `total` is known; nothing when it has not
    /// changed since the last call.
    pub fn show(&mut self, what: &str, done_of: Option<(u64, u64)>) {
        let line = match done_of {
            Some((done, total)) if self.tty => format!("{} {what}", bar(done, total)),
            _ => what.to_string(),
        };
        if line == self.last {
            return;
        }
        match (self.tty, self.to_stderr) {
            (true, true) => {
                eprint!("\r{line}    ");
                let _ = std::io::stderr().flush();
            }
            (true, false) => {
                print!("\r{line}    ");
                let _ = std::io::stdout().flush();
            }
            (false, true) => {}
            (false, false) => println!("{line}"),
        }
        self.last = line;
    }

    /// Ends the rewritten line, so what follows starts on its own.
    pub fn finish(&mut self) {
        if self.tty && !self.last.is_empty() {
            if self.to_stderr {
                eprintln!();
            } else {
                println!();
            }
        }
        self.last.clear();
    }
}

/// `[#####     ]  45%`; a total of 0 counts as done.
fn bar(done: u64, total: u64) -> String {
    let fraction = if total == 0 {
        1.0
    } else {
        (done.min(total) as f64) / (total as f64)
    };
    let filled = ((fraction * WIDTH as f64).round() as usize).min(WIDTH);
    format!(
        "[{}{}] {:>3.0}%",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled),
        fraction * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_with_the_fraction_done() {
        assert_eq!(bar(0, 10), format!("[{}]   0%", " ".repeat(30)));
        assert_eq!(
            bar(5, 10),
            format!("[{}{}]  50%", "#".repeat(15), " ".repeat(15))
        );
        assert_eq!(bar(10, 10), format!("[{}] 100%", "#".repeat(30)));
        assert_eq!(bar(12, 10), bar(10, 10));
        assert_eq!(bar(0, 0), bar(1, 1));
    }
}
