//! Reading a process's `/metrics` in tests: the text, and sums of the samples of one family.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `GET /metrics` from `addr` ("127.0.0.1:PORT"); the body, or `None` if it cannot be had.
pub fn fetch(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The sum of the samples of metric `name` whose labels include every `k="v"` of `labels`
/// (0 if there are none).
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match key.split_once('{') {
                Some((m, r)) => (m, r),
                None => (key, ""),
            };
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            (metric == name && all).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// [`sum`] over a fresh scrape of `addr`; panics if the endpoint does not answer.
pub fn sum_at(addr: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = fetch(addr).unwrap_or_else(|| panic!("no metrics at {addr}"));
    sum(&text, name, labels)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_matching_samples() {
        let text = "# HELP x y\nx{a=\"1\",b=\"2\"} 3\nx{a=\"1\",b=\"3\"} 4\nx_total 9\ny 1\n";
        assert_eq!(super::sum(text, "x", &[("a", "1")]), 7.0);
        assert_eq!(super::sum(text, "x", &[("b", "3")]), 4.0);
        assert_eq!(super::sum(text, "x_total", &[]), 9.0);
        assert_eq!(super::sum(text, "z", &[]), 0.0);
    }
}
