//! The Prometheus text exposition format, version 0.0.4.
//!
//! A family is written as `# HELP`, `# TYPE`, then all its samples, contiguously. Label
//! values are escaped (`\\`, `\"`, `\n`); numbers use Rust's `Display`, which never writes
//! an exponent, and `+Inf`/`-Inf`/`NaN` for non-finite floats.

use crate::primitives::{HistogramSnapshot, LATENCY_BUCKETS};
use std::fmt::Write;

/// The content type of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Builds one scrape's text.
#[derive(Debug, Default)]
pub struct Encoder {
    out: String,
}

/// A sample value.
pub trait Value {
    fn write_to(&self, out: &mut String);
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn write_to(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
int_value!(u64, i64, u32, i32, usize);

impl Value for f64 {
    fn write_to(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if *self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

impl Value for bool {
    fn write_to(&self, out: &mut String) {
        out.push(if *self { '1' } else { '0' });
    }
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: its help text and type. Write all its samples before the next one.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self
    }

    /// One sample line: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Value) -> &mut Self {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        self.out.push(' ');
        value.write_to(&mut self.out);
        self.out.push('\n');
        self
    }

    /// A family with a single unlabelled counter.
    pub fn counter(&mut self, name: &str, help: &str, value: impl Value) -> &mut Self {
        self.family(name, Kind::Counter, help)
            .sample(name, &[], value)
    }

    /// A family with a single unlabelled gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl Value) -> &mut Self {
        self.family(name, Kind::Gauge, help)
            .sample(name, &[], value)
    }

    /// The `_bucket`, `_sum` and `_count` lines of one labelled histogram in the family
    /// `name` (started with [`Encoder::family`] and [`Kind::Histogram`]).
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        h: &HistogramSnapshot,
    ) -> &mut Self {
        let bucket = format!("{name}_bucket");
        for (bound, n) in LATENCY_BUCKETS.iter().zip(h.cumulative) {
            self.out.push_str(&bucket);
            write_labels(&mut self.out, labels, Some(&bound.to_string()));
            let _ = writeln!(self.out, " {n}");
        }
        self.out.push_str(&bucket);
        write_labels(&mut self.out, labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", h.count);
        self.sample(&format!("{name}_sum"), labels, h.sum_seconds);
        self.sample(&format!("{name}_count"), labels, h.count)
    }

    /// The text so far.
    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    let le = le.map(|v| ("le", v));
    for (k, v) in labels.iter().copied().chain(le) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Histogram;
    use std::time::Duration;

    #[test]
    fn renders_families_samples_and_histograms() {
        let mut e = Encoder::new();
        e.counter("tessera_x_total", "An x.", 3u64);
        e.family("tessera_y", Kind::Gauge, "A y.")
            .sample("tessera_y", &[("a", "q\"\\\n")], -2i64);
        let h = Histogram::new();
        h.observe(Duration::from_millis(3));
        e.family("tessera_z_seconds", Kind::Histogram, "A z.")
            .histogram("tessera_z_seconds", &[("op", "read")], &h.snapshot());
        let t = e.finish();
        assert!(t.starts_with("# HELP tessera_x_total An x.\n# TYPE tessera_x_total counter\n"));
        assert!(t.contains("tessera_x_total 3\n"));
        assert!(t.contains("tessera_y{a=\"q\\\"\\\\\\n\"} -2\n"));
        assert!(t.contains("tessera_z_seconds_bucket{op=\"read\",le=\"0.0025\"} 0\n"));
        assert!(t.contains("tessera_z_seconds_bucket{op=\"read\",le=\"0.005\"} 1\n"));
        assert!(t.contains("tessera_z_seconds_bucket{op=\"read\",le=\"+Inf\"} 1\n"));
        assert!(t.contains("tessera_z_seconds_bucket{op=\"read\",le=\"10\"} 1\n"));
        assert!(t.contains("tessera_z_seconds_sum{op=\"read\"} 0.003\n"));
        assert!(t.contains("tessera_z_seconds_count{op=\"read\"} 1\n"));
    }
}
