//! `--metrics-addr` on real processes: a metaserver, three chunkservers and a mount each
//! serve `/metrics` in the Prometheus text format, and the counters move with file I/O (and
//! the scrubber's with a corrupted shard).
//!
//! Set `METRICS_DUMP_DIR` to keep each scrape (e.g. to run `promtool check metrics` on it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tessera_fuse_client::mount::is_mounted;
use tessera_tests::fault::noise;
use tessera_tests::mount::{drop_caches, unmount};
use tessera_tests::process::write_secret;
use tessera_tests::{START_TIMEOUT, TempDir, TesseraProcess, free_port};

/// One scrape: samples by `name{labels}` exactly as written.
#[derive(Debug)]
struct Scrape {
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn get(&self, key: &str) -> Option<f64> {
        self.samples.get(key).copied()
    }

    fn value(&self, key: &str) -> f64 {
        self.get(key).unwrap_or_else(|| {
            let names: Vec<&String> = self.samples.keys().collect();
            panic!("no sample {key}; have {names:?}")
        })
    }
}

/// `GET /metrics` over a plain socket; checks the status line and content type.
fn fetch(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nAccept: */*\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP head");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(len, body.len(), "Content-Length");
    body.to_string()
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    is_name_start(c) || c.is_ascii_digit()
}

fn valid_name(n: &str) -> bool {
    n.chars().next().is_some_and(is_name_start) && n.chars().all(is_name_char)
}

/// Parses `{k="v",...}` at the start of `s`; returns the end index.
fn parse_labels(s: &str, line: &str) -> usize {
    let b: Vec<char> = s.chars().collect();
    assert_eq!(b[0], '{');
    let mut i = 1;
    let mut seen = Vec::new();
    loop {
        if b[i] == '}' {
            return i + 1;
        }
        let start = i;
        while b[i] != '=' {
            i += 1;
        }
        let key: String = b[start..i].iter().collect();
        assert!(
            valid_name(&key) && !key.starts_with("__"),
            "label {key:?} in {line}"
        );
        assert!(!seen.contains(&key), "label {key} twice in {line}");
        seen.push(key);
        i += 1;
        assert_eq!(b[i], '"', "unquoted label value in {line}");
        i += 1;
        while b[i] != '"' {
            if b[i] == '\\' {
                assert!(matches!(b[i + 1], '\\' | '"' | 'n'), "bad escape in {line}");
                i += 1;
            }
            assert_ne!(b[i], '\n');
            i += 1;
        }
        i += 1;
        match b[i] {
            ',' => i += 1,
            '}' => {}
            c => panic!("unexpected {c:?} after a label value in {line}"),
        }
    }
}

/// Checks the text exposition format 0.0.4 and returns the samples: every line is a
/// comment or `name{labels} value`; every sample belongs to a family declared by exactly
/// one `# TYPE` before it, and a family's samples are contiguous.
fn parse(text: &str) -> Scrape {
    assert!(text.ends_with('\n'), "the text must end with a newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            if kw == "TYPE" || kw == "HELP" {
                assert!(valid_name(name), "bad name in {line}");
            }
            if kw == "TYPE" {
                let t = parts.next().unwrap_or("");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "{line}"
                );
                assert!(!types.contains_key(name), "second # TYPE for {name}");
                if let Some(c) = current.take() {
                    finished.push(c);
                }
                types.insert(name.to_string(), t.to_string());
                current = Some(name.to_string());
            }
            continue;
        }
        assert!(!line.starts_with('#'), "comment without a space: {line}");
        let name_end = line.find(|c: char| !is_name_char(c)).expect("a value");
        let name = &line[..name_end];
        assert!(valid_name(name), "bad metric name in {line}");
        let rest = &line[name_end..];
        let labels_end = if rest.starts_with('{') {
            parse_labels(rest, line)
        } else {
            0
        };
        let key = format!("{name}{}", &rest[..labels_end]);
        let value_text = rest[labels_end..]
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value in {line}"));
        let value_text = value_text.split(' ').next().unwrap();
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|base| types.get(*base).is_some_and(|t| t == "histogram"))
            .unwrap_or(name);
        assert!(types.contains_key(family), "{name} has no # TYPE: {line}");
        assert_eq!(
            current.as_deref(),
            Some(family),
            "sample of {family} outside its family block: {line}"
        );
        assert!(!finished.iter().any(|f| f == family));
        if types[family] == "counter" {
            assert!(
                name.ends_with("_total"),
                "counter {name} must end in _total"
            );
        }
        assert!(
            name.starts_with("tessera_"),
            "{name} lacks the tessera_ prefix"
        );
        assert!(
            samples.insert(key.clone(), value).is_none(),
            "duplicate sample {key}"
        );
    }
    // Histograms: buckets cumulative in `le` order, `+Inf` equal to `_count`.
    for (name, t) in &types {
        if t != "histogram" {
            continue;
        }
        let prefix = format!("{name}_bucket{{");
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (k, v) in &samples {
            let Some(labels) = k.strip_prefix(&prefix) else {
                continue;
            };
            let (rest, le) = labels.rsplit_once("le=\"").expect("le is the last label");
            let le = le.trim_end_matches("\"}");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            series
                .entry(rest.trim_end_matches(',').to_string())
                .or_default()
                .push((le, *v));
        }
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{name}{{{labels}}}"
            );
            let (le, inf) = *buckets.last().unwrap();
            assert!(le.is_infinite(), "{name}{{{labels}}} has no +Inf bucket");
            let count_key = if labels.is_empty() {
                format!("{name}_count")
            } else {
                format!("{name}_count{{{labels}}}")
            };
            assert_eq!(samples.get(&count_key), Some(&inf), "{count_key} vs +Inf");
        }
    }
    Scrape { samples }
}

/// Scrapes `addr`, validates the text, and keeps a copy if `METRICS_DUMP_DIR` is set.
fn scrape(addr: &str, tag: &str) -> Scrape {
    let text = fetch(addr);
    if let Some(dir) = std::env::var_os("METRICS_DUMP_DIR") {
        std::fs::write(PathBuf::from(dir).join(format!("{tag}.prom")), &text).unwrap();
    }
    parse(&text)
}

/// Scrapes until `ok` holds (a stripe health cache or a scrub pass may lag).
fn scrape_until(addr: &str, tag: &str, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let started = Instant::now();
    loop {
        let s = scrape(addr, tag);
        if ok(&s) {
            return s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} never held at {addr}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A mount process, unmounted before it is killed.
struct MountGuard {
    path: PathBuf,
    process: Option<TesseraProcess>,
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        unmount(&self.path);
        let started = Instant::now();
        while is_mounted(&self.path) && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.process = None;
    }
}

fn addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

fn start_mount(dir: &Path, meta: &str, secret: &Path, metrics: &str) -> MountGuard {
    let path = dir.join("mnt");
    std::fs::create_dir_all(&path).unwrap();
    let args: Vec<String> = vec![
        "mount".into(),
        path.display().to_string(),
        "--meta".into(),
        meta.into(),
        "--secret-file".into(),
        secret.display().to_string(),
        "--ec".into(),
        "2+1".into(),
        "--metrics-addr".into(),
        metrics.into(),
    ];
    let mut m = MountGuard {
        path: path.clone(),
        process: Some(TesseraProcess::spawn("mount", dir, args)),
    };
    let started = Instant::now();
    while !is_mounted(&path) {
        if started.elapsed() > START_TIMEOUT {
            let log = m.process.as_ref().map(|p| p.log_tail(40)).unwrap();
            m.process = None;
            panic!("not mounted in time; log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn every_process_serves_prometheus_metrics_that_follow_file_io() {
    let dir = TempDir::new("metrics");
    let (secret_file, secret) = write_secret(dir.path());

    let (meta_addr, meta_metrics) = (addr(), addr());
    let mut meta = TesseraProcess::spawn(
        "meta-1",
        dir.path(),
        [
            "meta",
            "--id",
            "1",
            "--listen",
            &meta_addr,
            "--data",
            &dir.join("meta-1").display().to_string(),
            "--peers",
            &format!("1={meta_addr}"),
            "--secret-file",
            &secret_file.display().to_string(),
            "--init",
            "--election-ms",
            "300",
            "--heartbeat-ms",
            "50",
            "--metrics-addr",
            &meta_metrics,
        ],
    );
    meta.wait_ready(&meta_addr, &secret, START_TIMEOUT).await;

    let mut chunks = Vec::new();
    let mut chunk_metrics = Vec::new();
    for i in 1..=3 {
        let (a, m) = (addr(), addr());
        let mut p = TesseraProcess::spawn(
            &format!("chunk-{i}"),
            dir.path(),
            [
                "chunk",
                "--listen",
                &a,
                "--data",
                &dir.join(format!("chunk-{i}")).display().to_string(),
                "--meta",
                &meta_addr,
                "--secret-file",
                &secret_file.display().to_string(),
                "--heartbeat-ms",
                "100",
                "--scrub-rate",
                "0",
                "--scrub-interval-ms",
                "200",
                "--metrics-addr",
                &m,
            ],
        );
        p.wait_ready(&a, &secret, START_TIMEOUT).await;
        chunks.push(p);
        chunk_metrics.push(m);
    }
    let up = "tessera_chunkservers{state=\"up\"}";
    let meta_before = scrape_until(&meta_metrics, "meta-before", "3 chunkservers up", |s| {
        s.get(up) == Some(3.0)
    });
    assert_eq!(meta_before.value("tessera_raft_is_leader"), 1.0);
    assert_eq!(meta_before.value("tessera_raft_leader_id"), 1.0);
    assert!(meta_before.value("tessera_raft_term") >= 1.0);
    assert!(meta_before.value("tessera_raft_leader_changes_total") >= 1.0);
    assert!(meta_before.value("tessera_raft_applied_index") >= 1.0);
    assert_eq!(
        meta_before.value("tessera_raft_state{state=\"leader\"}"),
        1.0
    );
    assert!(
        meta_before
            .get("tessera_stripes{health=\"healthy\"}")
            .is_some()
    );
    assert!(
        meta_before.value("tessera_rpc_server_requests_total{method=\"chunk-heartbeat\"}") > 0.0
    );

    let mount_metrics = addr();
    let mount = start_mount(dir.path(), &meta_addr, &secret_file, &mount_metrics);
    let mount_before = scrape(&mount_metrics, "mount-before");
    let chunk_before: Vec<Scrape> = chunk_metrics
        .iter()
        .enumerate()
        .map(|(i, a)| scrape(a, &format!("chunk-{}-before", i + 1)))
        .collect();
    assert!(chunk_before[0].value("tessera_chunk_capacity_bytes") > 0.0);
    assert_eq!(chunk_before[0].value("tessera_chunk_shards"), 0.0);

    // File I/O: 3 MiB written and synced, a miss, the file read back from the cluster.
    let data = noise(3 << 20, 7);
    let file = mount.path.join("data.bin");
    {
        let mut f = std::fs::File::create(&file).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
    }
    assert!(std::fs::metadata(mount.path.join("missing")).is_err());
    drop_caches();
    assert_eq!(std::fs::read(&file).unwrap(), data);

    let w = "tessera_fuse_requests_total{op=\"write\"}";
    let mount_after = scrape(&mount_metrics, "mount-after");
    let grew = |before: &Scrape, after: &Scrape, key: &str| {
        let (b, a) = (before.get(key).unwrap_or(0.0), after.value(key));
        assert!(a > b, "{key} did not grow: {b} -> {a}");
    };
    grew(&mount_before, &mount_after, w);
    grew(
        &mount_before,
        &mount_after,
        "tessera_fuse_requests_total{op=\"create\"}",
    );
    grew(
        &mount_before,
        &mount_after,
        "tessera_fuse_requests_total{op=\"read\"}",
    );
    grew(
        &mount_before,
        &mount_after,
        "tessera_fuse_errors_total{op=\"lookup\"}",
    );
    grew(
        &mount_before,
        &mount_after,
        "tessera_fuse_request_duration_seconds_count{op=\"write\"}",
    );
    assert!(mount_after.value("tessera_fuse_written_bytes_total") >= data.len() as f64);
    assert!(mount_after.value("tessera_fuse_read_bytes_total") >= data.len() as f64);
    // Every shard byte read was checked against its id, and no server sent a bad one.
    assert!(mount_after.value("tessera_shard_verified_bytes_total") >= data.len() as f64);
    assert_eq!(
        mount_after.value("tessera_shard_bad_replies_reported_total"),
        0.0
    );
    let put = "tessera_rpc_client_requests_total{method=\"put-shard\"}";
    grew(&mount_before, &mount_after, put);
    grew(
        &mount_before,
        &mount_after,
        "tessera_rpc_client_sent_bytes_total{method=\"put-shard\"}",
    );
    grew(
        &mount_before,
        &mount_after,
        "tessera_rpc_client_requests_total{method=\"meta-write\"}",
    );

    let mut shards = 0.0;
    for (i, a) in chunk_metrics.iter().enumerate() {
        let tag = format!("chunk-{}-after", i + 1);
        // A scrub pass starts every 200 ms: wait until it has seen this server's shards.
        let after = scrape_until(a, &tag, "a scrub pass over the new shards", |s| {
            s.value("tessera_scrub_shards_checked_total") > 0.0
                && s.value("tessera_chunk_shards") > 0.0
        });
        let before = &chunk_before[i];
        grew(before, &after, "tessera_chunk_shards");
        grew(before, &after, "tessera_chunk_used_bytes");
        grew(
            before,
            &after,
            "tessera_rpc_server_requests_total{method=\"put-shard\"}",
        );
        grew(
            before,
            &after,
            "tessera_rpc_server_received_bytes_total{method=\"put-shard\"}",
        );
        grew(before, &after, "tessera_scrub_shards_checked_total");
        assert_eq!(after.value("tessera_scrub_corrupt_total"), 0.0);
        shards += after.value("tessera_chunk_shards");
    }
    assert!(shards >= 3.0, "{shards} shards in all");

    let meta_after = scrape_until(&meta_metrics, "meta-after", "a healthy stripe", |s| {
        s.get("tessera_stripes{health=\"healthy\"}")
            .is_some_and(|n| n > 0.0)
    });
    grew(
        &meta_before,
        &meta_after,
        "tessera_rpc_server_requests_total{method=\"meta-write\"}",
    );
    grew(&meta_before, &meta_after, "tessera_raft_last_log_index");
    grew(&meta_before, &meta_after, "tessera_raft_commit_index");
    // Reads are confirmed under the leader's lease, and every step of a commit is timed.
    grew(&meta_before, &meta_after, "tessera_raft_lease_reads_total");
    for step in ["commit", "log_append", "log_sync", "apply", "read"] {
        grew(
            &meta_before,
            &meta_after,
            &format!("tessera_raft_step_seconds_count{{step=\"{step}\"}}"),
        );
        let quantile = |q: &str| {
            meta_after.value(&format!(
                "tessera_raft_step_recent_seconds{{step=\"{step}\",quantile=\"{q}\"}}"
            ))
        };
        let (p50, p99) = (quantile("0.5"), quantile("0.99"));
        assert!(
            p50 > 0.0 && p50 <= p99 && p99 < 60.0,
            "{step}: p50 {p50}, p99 {p99}"
        );
    }
    assert_eq!(
        meta_after.value("tessera_stripes{health=\"degraded\"}")
            + meta_after.value("tessera_stripes{health=\"lost\"}"),
        0.0
    );

    // A flipped byte in a stored shard: the next scrub pass finds it.
    let shard = std::fs::read_dir(dir.join("chunk-1").join("shards"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .next()
        .expect("chunk-1 stores a shard");
    let mut bytes = std::fs::read(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&shard, bytes).unwrap();
    scrape_until(
        &chunk_metrics[0],
        "chunk-1-corrupt",
        "a corrupt shard found",
        |s| s.value("tessera_scrub_corrupt_total") >= 1.0,
    );

    drop(mount);
    drop(chunks);
    drop(meta);
}
