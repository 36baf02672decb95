//! One flush asks for placement once, for every stripe in it: small writes spread over a
//! file, then `fsync`, store ten packed stripes with one `PlaceStripes` call (counted by the
//! mount's per-method RPC metrics) and one commit, and read back intact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::Duration;

use tessera_client::MetaClientOptions;
use tessera_proto::meta::{Query, Response};
use tessera_tests::fault::noise;
use tessera_tests::free_port;
use tessera_tests::mount::{DevCluster, drop_caches};

/// The value of the counter sample `key` (`name{labels}` exactly as the mount writes it) on
/// the mount's `/metrics`; 0 if the mount has not recorded it yet.
fn counter(addr: &str, key: &str) -> f64 {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .map(|v| v.trim().parse::<f64>().unwrap())
        .next()
        .unwrap_or(0.0)
}

const STRIPE: u64 = 64 << 10;
const PIECE: usize = 16 << 10;
const PIECES: u64 = 40;

#[tokio::test(flavor = "multi_thread")]
async fn a_flush_of_ten_stripes_asks_for_placement_once() {
    let mut c = DevCluster::start("mount-flush", 0).await;
    let metrics = format!("127.0.0.1:{}", free_port());
    // A long session lease: no renewal (a metadata write) falls between the counts.
    let m = c.add_mount(&[
        "--stripe-size",
        "64K",
        "--metrics-addr",
        &metrics,
        "--session-lease-ms",
        "600000",
    ]);
    let places = "tessera_rpc_client_requests_total{method=\"place-stripes\"}";
    let single = "tessera_rpc_client_requests_total{method=\"place-stripe\"}";
    let commits = "tessera_rpc_client_requests_total{method=\"meta-write\"}";

    let path = c.mount(m).join("spread");
    let f = std::fs::File::create(&path).unwrap();
    let (places_before, writes_before) = (counter(&metrics, places), counter(&metrics, commits));
    // 16 KiB inside every other 64 KiB stripe span: no write completes a stripe, so nothing
    // is stored until the fsync, which packs the 40 pieces four to a stripe.
    let mut want = vec![0u8; (PIECES * 2 * STRIPE) as usize];
    for i in 0..PIECES {
        let off = i * 2 * STRIPE + 8192;
        let piece = noise(PIECE, i + 1);
        f.write_all_at(&piece, off).unwrap();
        want[off as usize..off as usize + PIECE].copy_from_slice(&piece);
    }
    f.sync_all().unwrap();
    assert_eq!(
        counter(&metrics, places) - places_before,
        1.0,
        "one placement call for the whole flush"
    );
    assert_eq!(counter(&metrics, single), 0.0, "no per-stripe placement");
    assert_eq!(
        counter(&metrics, commits) - writes_before,
        1.0,
        "one CommitSlice for the whole flush"
    );

    // The flush really held ten stripes, and they read back.
    let ino = std::fs::metadata(&path).unwrap().ino();
    let client = c.meta.client(MetaClientOptions::default());
    let query = Query::Layout {
        ino,
        first: 0,
        last: u64::MAX,
    };
    let Ok(Ok(Response::Layout(layout))) = client.read(query).await else {
        panic!("no layout for inode {ino}");
    };
    assert_eq!(layout.stripes.len(), 10, "{:?}", layout.stripes);
    drop(f);
    drop_caches();
    let got = std::fs::read(&path).unwrap();
    // The file ends after the last piece.
    let size = ((PIECES - 1) * 2 * STRIPE + 8192) as usize + PIECE;
    assert_eq!(got.len(), size);
    assert!(got == want[..size], "the data read back differs");
}
