//! The async frame reader on hostile streams: random bytes and damaged frames must end in
//! a value or an error, never a panic, a hang, or a read past the declared frame.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use tessera_proto::Method;
use tessera_proto::frame::{FrameHeader, FrameLimits};
use tessera_rpc::wire::read_frame;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[tokio::test]
async fn random_and_damaged_streams_never_panic() {
    let limits = FrameLimits {
        max_body: 1024,
        max_payload: 4096,
    };
    let mut rng = Rng(0x0005_eed0_f7e5_5e7a);
    let (mut frames, mut errors) = (0u64, 0u64);
    for _ in 0..1_000_000 {
        let mut buf = Vec::new();
        for _ in 0..(rng.next() % 3) {
            let mut h = FrameHeader::request(Method(1), rng.next(), 0);
            h.body_len = (rng.next() % 64) as u32;
            h.payload_len = (rng.next() % 128) as u32;
            buf.extend_from_slice(&h.encode());
            buf.extend((0..h.body_len + h.payload_len).map(|_| rng.next() as u8));
        }
        let damage = rng.next() % 8;
        for _ in 0..damage {
            if buf.is_empty() {
                buf.push(rng.next() as u8);
            }
            let i = (rng.next() as usize) % buf.len();
            buf[i] = rng.next() as u8;
        }
        if rng.next().is_multiple_of(4) {
            let cut = (rng.next() as usize) % (buf.len() + 1);
            buf.truncate(cut);
        }
        let mut stream: &[u8] = &buf;
        loop {
            let before = stream.len();
            match read_frame(&mut stream, &limits).await {
                Ok(Some(f)) => {
                    frames += 1;
                    let used = before - stream.len();
                    assert_eq!(used as u64, f.header.wire_len());
                }
                Ok(None) => break,
                Err(_) => {
                    errors += 1;
                    break;
                }
            }
        }
    }
    println!("frames {frames}, errors {errors}");
    assert!(frames > 100_000 && errors > 100_000);
}
