//! Shard files written before range proofs existed still serve verified reads (issue 16,
//! acceptance 3). `chunkserver/testdata/v1/` holds two shard files written by a chunkserver
//! built from the commit before proofs (deee9c6): a shard of one block or less (no hash
//! list) and one of four blocks. A current chunkserver serves them from a data directory
//! made of those files, and every range it returns checks out against the shard id with its
//! proof, as a client checks it. Nothing is converted: proofs come from the hash list that
//! format version 1 always had.
//!
//! To write the fixtures again with another binary:
//!
//!     TESSERA_BIN=/path/to/old/tessera cargo test -p tessera-tests --test chunk_old_shards \
//!         -- --ignored write_fixtures
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use tessera_proto::ShardId;
use tessera_tests::TempDir;
use tessera_tests::bin::workspace_root;
use tessera_tests::chunk::{ChunkOptions, Chunkserver, shard_file};
use tessera_tests::process::write_secret;

/// The fixtures' contents: compressible (they are in git) and different in every block.
fn fixture(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect::<Vec<u8>>()
        .into()
}

const LENS: [usize; 2] = [5_000, 3 * 65_536 + 100];

fn fixtures_dir() -> PathBuf {
    workspace_root().join("chunkserver/testdata/v1")
}

/// A real chunkserver on `data`, in `dir`.
async fn chunkserver(dir: &TempDir, data: &Path) -> Chunkserver {
    let (secret_path, secret) = write_secret(dir.path());
    Chunkserver::start(
        dir,
        "chunk",
        data,
        (&secret_path, &secret),
        &ChunkOptions::default(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn shard_files_from_before_proofs_serve_proved_ranges() {
    let dir = TempDir::new("old-shards");
    let data = dir.join("data");
    for len in LENS {
        let id = ShardId::of(&fixture(len));
        let path = shard_file(&data, &id);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::copy(fixtures_dir().join(id.to_string()), &path).unwrap();
    }
    // The data directory's marker, as version 1 wrote it.
    std::fs::write(data.join("FORMAT"), "tessera-chunk-data 1\n").unwrap();
    let server = chunkserver(&dir, &data).await;
    let c = server.client();
    for len in LENS {
        let want = fixture(len);
        let id = ShardId::of(&want);
        assert_eq!(c.get(id, None).await.unwrap(), want, "whole shard of {len}");
        let l = len as u64;
        for (start, end) in [
            (0, 1),
            (4096, 8192.min(l)),
            (l / 2, l / 2 + 1),
            (l - 100, l),
            (0, l),
        ] {
            // `get` checks the bytes against the id with the reply's proof.
            let got = c.get(id, Some((start, end))).await.unwrap();
            assert!(
                got[..] == want[start as usize..end as usize],
                "{start}..{end} of {len}"
            );
            let (proof, _) = c.get_raw(id, Some((start, end))).await.unwrap();
            assert_eq!(proof.len, l);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "writes the fixtures; run by hand with TESSERA_BIN set to an old build"]
async fn write_fixtures() {
    let dir = TempDir::new("old-shards-write");
    let data = dir.join("data");
    let server = chunkserver(&dir, &data).await;
    let c = server.client();
    std::fs::create_dir_all(fixtures_dir()).unwrap();
    for len in LENS {
        let bytes = fixture(len);
        let id = ShardId::of(&bytes);
        c.put(id, bytes).await.unwrap();
        std::fs::copy(shard_file(&data, &id), fixtures_dir().join(id.to_string())).unwrap();
    }
}
