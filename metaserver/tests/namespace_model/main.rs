//! Model-based test of the namespace core.
//!
//! Random command sequences (small name and inode alphabets, so collisions, conflicts and
//! error paths are frequent) go to three implementations at once: the core over `MemStore`,
//! the core over `RedbStore` (in batches, through `apply_batch`), and the independent model in
//! `model/`. Every reply must agree, and at the end so must every observable fact: the tree
//! reached from the root, each inode by number (which covers orphans), the GC queue, statfs,
//! and the digests of the two stores.
//!
//! The core also checks its own invariants as it goes (`debug_assert!`s on reference counts,
//! disjoint chunk runs, link counts and lock ownership), so a sequence that breaks one fails
//! here even when every reply agrees: run this test with debug assertions on (the dev and
//! test profiles keep them).
//!
//! `PROPTEST_CASES` overrides the number of sequences (10,000 by default). `MODEL_STATS=1`
//! (with `--nocapture`) prints every command's outcome: count them with `sort | uniq -c` to
//! check that the generator still reaches the successful and the rare error paths.

mod harness;
mod model;
mod strategy;

use harness::Harness;
use proptest::prelude::*;
use strategy::step;

/// Sequences per run; each is up to 49 steps after a fixed seed tree.
const CASES: u32 = 10_000;
/// Session lease: long enough to outlive a sequence unless a `Sleep` step passes.
const LEASE: i64 = 1_000_000;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES)
}

/// The invariant checks above are compiled only with debug assertions. A runtime check
/// rather than a `const` one, so a release build of the tests still builds and says why it
/// fails.
#[test]
#[allow(clippy::assertions_on_constants)]
fn runs_with_debug_assertions() {
    assert!(
        cfg!(debug_assertions),
        "build the model test with debug assertions (the dev or test profile)"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    })]

    #[test]
    fn core_agrees_with_the_model(steps in prop::collection::vec(step(), 1..50)) {
        Harness::new().run(&steps)?;
    }
}
