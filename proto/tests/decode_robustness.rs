//! Hostile input for every decoder in the wire crate.
//!
//! cargo-fuzz needs a nightly toolchain, which this project's machines do not have, so this
//! is the CI fuzz target: a seeded generator drives 1,000,000+ inputs (random bytes, and
//! valid frames with mutated bytes and lengths) through the header decoder, the whole-frame
//! parser and the body decoder. A panic fails the test; every input must produce a value or
//! a typed error. The seed is printed so a failure can be replayed with `TESSERA_FUZZ_SEED`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tessera_proto::frame::{FrameHeader, FrameKind, FrameLimits, HEADER_LEN, parse_frame};
use tessera_proto::system::PingReply;
use tessera_proto::{FrameError, Method, Status, decode_body, encode_body};

/// Small, fast, deterministic generator (xorshift64*), so a seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A body shape with the constructs later messages use: nested enums, options, strings,
/// byte vectors, maps.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Sample {
    Unit,
    Named {
        name: String,
        data: Vec<u8>,
        child: Option<Box<Sample>>,
    },
    Map(BTreeMap<u64, String>),
    Pair(u32, i64),
}

fn sample_body() -> Vec<u8> {
    encode_body(&Sample::Named {
        name: "dir/entry".into(),
        data: vec![1, 2, 3, 4],
        child: Some(Box::new(Sample::Map(BTreeMap::from([(1, "a".into())])))),
    })
    .unwrap()
}

fn valid_frame(rng: &mut Rng) -> Vec<u8> {
    let body = sample_body();
    let payload_len = rng.below(64) as usize;
    let mut h = FrameHeader::request(Method(rng.below(0x400) as u16), rng.next(), 1000);
    h.body_len = body.len() as u32;
    h.payload_len = payload_len as u32;
    let mut f = h.encode().to_vec();
    f.extend_from_slice(&body);
    f.extend((0..payload_len).map(|i| i as u8));
    f
}

fn mutate(rng: &mut Rng, buf: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        match rng.below(5) {
            0 if !buf.is_empty() => {
                let i = rng.below(buf.len() as u64) as usize;
                buf[i] ^= 1 << rng.below(8);
            }
            1 if !buf.is_empty() => {
                let i = rng.below(buf.len() as u64) as usize;
                buf[i] = rng.next() as u8;
            }
            2 => {
                let cut = rng.below(buf.len() as u64 + 1) as usize;
                buf.truncate(cut);
            }
            3 if buf.len() >= HEADER_LEN => {
                // Overwrite one of the length fields with an extreme value.
                let at = if rng.below(2) == 0 { 24 } else { 28 };
                let v =
                    [u32::MAX, u32::MAX - 1, 1 << 31, 0, rng.next() as u32][rng.below(5) as usize];
                buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
            }
            _ => buf.push(rng.next() as u8),
        }
    }
}

/// Feeds one input to every decoder. Returns whether a whole frame was accepted.
fn feed(input: &[u8], limits: &FrameLimits) -> bool {
    let _ = FrameHeader::decode(input, limits);
    let _ = decode_body::<Sample>(input);
    let _ = decode_body::<PingReply>(input);
    let _ = decode_body::<Vec<String>>(input);
    match parse_frame(input, limits) {
        Ok(Some((f, used))) => {
            assert!(used <= input.len());
            assert_eq!(f.body.len(), f.header.body_len as usize);
            assert_eq!(f.payload.len(), f.header.payload_len as usize);
            let _ = decode_body::<Sample>(f.body);
            true
        }
        Ok(None) | Err(_) => false,
    }
}

#[test]
fn a_million_hostile_inputs_never_panic() {
    let seed = std::env::var("TESSERA_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7e55_e7a0_2026_1125u64);
    let iterations: u64 = std::env::var("TESSERA_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    println!("fuzz seed {seed:#x}, {iterations} inputs");
    let mut rng = Rng(seed | 1);
    let limits = FrameLimits {
        max_body: 4096,
        max_payload: 1 << 16,
    };
    let (mut accepted, mut refused) = (0u64, 0u64);
    let mut buf = Vec::with_capacity(512);
    for _ in 0..iterations {
        buf.clear();
        if rng.below(3) == 0 {
            let len = rng.below(200) as usize;
            buf.extend((0..len).map(|_| rng.next() as u8));
            if rng.below(2) == 0 && buf.len() >= 5 {
                // Random bytes behind a valid magic and version reach deeper checks.
                buf[..4].copy_from_slice(b"TSRA");
                buf[4] = 1;
            }
        } else {
            buf.extend_from_slice(&valid_frame(&mut rng));
            mutate(&mut rng, &mut buf);
        }
        if feed(&buf, &limits) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    println!("accepted {accepted}, refused {refused}");
    assert_eq!(accepted + refused, iterations);
    // The generator must exercise both sides, or it is not testing the decoder.
    assert!(
        accepted > iterations / 20,
        "too few valid frames: {accepted}"
    );
    assert!(
        refused > iterations / 20,
        "too few invalid frames: {refused}"
    );
}

#[test]
fn specific_malformations_have_distinct_errors() {
    let limits = FrameLimits::default();
    let mut rng = Rng(99);
    let good = valid_frame(&mut rng);

    let mut b = good.clone();
    b[24..28].copy_from_slice(&u32::MAX.to_be_bytes());
    let body_max = FrameHeader::decode(&b, &limits);
    let mut b = good.clone();
    b[28..32].copy_from_slice(&u32::MAX.to_be_bytes());
    let payload_max = FrameHeader::decode(&b, &limits);
    let truncated = FrameHeader::decode(&good[..20], &limits);
    let mut b = good.clone();
    b[..4].copy_from_slice(b"HTTP");
    let magic = FrameHeader::decode(&b, &limits);
    let mut b = good.clone();
    b[4] = 0;
    let version = FrameHeader::decode(&b, &limits);

    assert!(matches!(
        body_max,
        Err(FrameError::BodyTooLarge { len: u32::MAX, .. })
    ));
    assert!(matches!(
        payload_max,
        Err(FrameError::PayloadTooLarge { len: u32::MAX, .. })
    ));
    assert_eq!(truncated, Err(FrameError::Truncated { got: 20 }));
    assert_eq!(magic, Err(FrameError::BadMagic(*b"HTTP")));
    assert_eq!(version, Err(FrameError::UnsupportedVersion(0)));
    // Unknown methods decode (any server may add methods); the server answers them with
    // a distinct status, covered by the RPC tests. The status code itself is checked here.
    assert_eq!(Status::from_u16(0x7fff), None);

    let errors = [body_max, payload_max, truncated, magic, version];
    for (i, a) in errors.iter().enumerate() {
        for b in &errors[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn body_with_huge_declared_length_is_refused_without_allocating() {
    // A postcard byte vector whose varint length says ~2^63 bytes, followed by nothing.
    let hostile = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    assert!(decode_body::<Vec<u8>>(&hostile).is_err());
    assert!(decode_body::<String>(&hostile).is_err());
    assert!(decode_body::<Vec<String>>(&hostile).is_err());
}

#[test]
fn trailing_bytes_are_refused() {
    let mut b = encode_body(&7u32).unwrap();
    b.push(0);
    assert!(decode_body::<u32>(&b).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_header_round_trips(
        kind in prop_oneof![Just(FrameKind::Request), Just(FrameKind::Response)],
        method: u16, id: u64, deadline: u32,
        body_len in 0u32..=4096, payload_len in 0u32..=65536,
        status in 0u16..=5,
    ) {
        let h = FrameHeader {
            kind,
            flags: 0,
            method: Method(method),
            status: Status::from_u16(status).unwrap(),
            request_id: id,
            deadline_ms: deadline,
            body_len,
            payload_len,
        };
        let limits = FrameLimits { max_body: 4096, max_payload: 65536 };
        prop_assert_eq!(FrameHeader::decode(&h.encode(), &limits), Ok(h));
    }

    #[test]
    fn any_sample_body_round_trips(name in ".{0,40}", data in proptest::collection::vec(any::<u8>(), 0..64), a: u32, b: i64) {
        let v = Sample::Named { name, data, child: Some(Box::new(Sample::Pair(a, b))) };
        let enc = encode_body(&v).unwrap();
        prop_assert_eq!(decode_body::<Sample>(&enc).unwrap(), v);
    }
}
