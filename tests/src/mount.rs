//! Real FUSE mounts on a real cluster: metaservers, chunkservers and `tessera mount`
//! processes, torn down in the right order even when a test panics.
//!
//! [`DevCluster`] declares its parts so that Rust drops them mounts first (each unmounts
//! with `fusermount3 -u`, or lazily with `-uz` when busy, before its process is killed),
//! then chunkservers, then metaservers, then the directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tessera_client::MetaClientOptions;
use tessera_fuse_client::mount::is_mounted;
use tessera_proto::meta::ChunkserverState;

use crate::chunk::{ChunkOptions, Chunkserver};
use crate::meta::{MetaCluster, MetaOptions};
use crate::process::{TesseraProcess, write_secret};
use crate::{START_TIMEOUT, TempDir};

/// One `tessera mount` process and its mount point.
#[derive(Debug)]
pub struct Mount {
    path: PathBuf,
    process: Option<TesseraProcess>,
}

impl Mount {
    /// Mounts at `dir/<name>` and waits until the mount is there.
    pub fn start(dir: &Path, name: &str, meta: &[String], secret_file: &Path, ec: &str) -> Mount {
        Self::start_args(dir, name, meta, secret_file, ec, &[])
    }

    /// [`Self::start`] with further `tessera mount` flags.
    pub fn start_args(
        dir: &Path,
        name: &str,
        meta: &[String],
        secret_file: &Path,
        ec: &str,
        extra: &[&str],
    ) -> Mount {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).expect("create the mount point");
        let mut args: Vec<String> = vec![
            "mount".into(),
            path.display().to_string(),
            "--meta".into(),
            meta.join(","),
            "--secret-file".into(),
            secret_file.display().to_string(),
            "--ec".into(),
            ec.into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut m = Mount {
            path: path.clone(),
            process: Some(TesseraProcess::spawn_env(
                name,
                dir,
                args,
                &[(
                    "RUST_LOG",
                    // TESSERA_MOUNT_RUST_LOG overrides it, e.g. to trace the caps cache; both
                    // take effect only when the runner sets RUST_LOG (see `process.rs`).
                    &std::env::var("TESSERA_MOUNT_RUST_LOG").unwrap_or_else(|_| {
                        "info,tessera_client=debug,tessera_fuse_client=debug".to_string()
                    }),
                )],
            )),
        };
        let started = Instant::now();
        while !is_mounted(&path) {
            if started.elapsed() > START_TIMEOUT {
                let log = m
                    .process
                    .as_ref()
                    .map(|p| p.log_tail(40))
                    .unwrap_or_default();
                m.process = None;
                panic!("{} was not mounted in time; log:\n{log}", path.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path` inside the mount.
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }

    /// The mount process, e.g. to read its log.
    pub fn process(&self) -> Option<&TesseraProcess> {
        self.process.as_ref()
    }

    /// The mount process, to signal it.
    pub fn process_mut(&mut self) -> Option<&mut TesseraProcess> {
        self.process.as_mut()
    }

    /// SIGKILLs the mount process (a client crash) and detaches the dead mount lazily.
    pub fn kill9(&mut self) {
        if let Some(p) = self.process.as_mut() {
            p.kill9();
        }
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.path)
            .status();
    }

    /// Waits for the mount process to exit by itself (after a signal or an unmount).
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let p = self
            .process
            .as_mut()
            .expect("the mount process was started");
        p.wait_exit(timeout)
    }
}

/// Unmounts `path`: normally, else lazily (a test may still hold a file open on it).
pub fn unmount(path: &Path) {
    if !is_mounted(path) {
        return;
    }
    let ok = Command::new("fusermount3")
        .arg("-u")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = Command::new("fusermount3").arg("-uz").arg(path).status();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        unmount(&self.path);
        // Give the process a moment to flush and close its session, then it is killed.
        if let Some(p) = self.process.as_mut() {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(5) && p.pid().is_some() {
                if !is_mounted(&self.path) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.process = None;
    }
}

/// A cluster of 3 metaservers and 6 chunkservers (EC 4+2) with `mounts` mounts.
#[derive(Debug)]
pub struct DevCluster {
    pub mounts: Vec<Mount>,
    pub chunks: Vec<Chunkserver>,
    pub meta: MetaCluster,
    pub secret_file: PathBuf,
    pub dir: TempDir,
}

impl DevCluster {
    /// Starts everything and waits until every chunkserver is registered and every mount
    /// is up.
    pub async fn start(tag: &str, mounts: usize) -> DevCluster {
        Self::start_with(tag, 3, 6, "4+2", mounts).await
    }

    pub async fn start_with(
        tag: &str,
        metas: u64,
        chunks: usize,
        ec: &str,
        mounts: usize,
    ) -> DevCluster {
        Self::start_opts(tag, metas, chunks, ec, mounts, &MetaOptions::default()).await
    }

    /// Like [`Self::start_with`], with the metaservers' flags given.
    pub async fn start_opts(
        tag: &str,
        metas: u64,
        chunks: usize,
        ec: &str,
        mounts: usize,
        meta_opts: &MetaOptions,
    ) -> DevCluster {
        let each = vec![ChunkOptions::default(); chunks];
        Self::start_custom(tag, (metas, meta_opts), each, ec, mounts).await
    }

    /// Like [`Self::start_opts`], with one chunkserver (`chunk-{i+1}`) per element of
    /// `chunks`, each with its own flags and environment (`meta` is filled in here).
    pub async fn start_custom(
        tag: &str,
        (metas, meta_opts): (u64, &MetaOptions),
        chunk_opts: Vec<ChunkOptions>,
        ec: &str,
        mounts: usize,
    ) -> DevCluster {
        let dir = TempDir::new(tag);
        let (secret_file, secret) = write_secret(dir.path());
        let meta = MetaCluster::start(dir.path(), &secret_file, &secret, metas, meta_opts).await;
        let chunks = chunk_opts.len();
        let mut servers = Vec::new();
        for (i, mut opts) in chunk_opts.into_iter().enumerate() {
            let name = format!("chunk-{}", i + 1);
            let data = dir.join(&name);
            opts.meta = meta.addrs();
            servers
                .push(Chunkserver::start(&dir, &name, &data, (&secret_file, &secret), &opts).await);
        }
        let client = meta.client(MetaClientOptions::default());
        let started = Instant::now();
        loop {
            let up = client
                .list_chunkservers()
                .await
                .map(|l| l.iter().filter(|s| s.state == ChunkserverState::Up).count())
                .unwrap_or(0);
            if up >= chunks {
                break;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "only {up} of {chunks} chunkservers registered in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A run asked to use TLS must really use it (and one without, not).
        for m in meta.members.values() {
            let tls = format!("tls={}", crate::tls::enabled());
            assert!(
                m.process.log().contains(&tls),
                "meta-{} did not log {tls}",
                m.id
            );
        }
        let addrs = meta.addrs();
        let mounts = (1..=mounts)
            .map(|i| Mount::start(dir.path(), &format!("mnt-{i}"), &addrs, &secret_file, ec))
            .collect();
        DevCluster {
            mounts,
            chunks: servers,
            meta,
            secret_file,
            dir,
        }
    }

    /// Runs an admin command (`tessera ARGS`) against this cluster; returns its exit code
    /// and its output (stdout then stderr).
    pub fn admin(&self, args: &[&str]) -> (i32, String) {
        crate::fault::admin(&self.meta.addrs(), &self.secret_file, args)
    }

    /// Mount `i` (0-based).
    pub fn mount(&self, i: usize) -> &Mount {
        &self.mounts[i]
    }

    /// Adds a mount `mnt-N` (the next number) with extra `tessera mount` flags.
    pub fn add_mount(&mut self, extra: &[&str]) -> usize {
        let name = format!("mnt-{}", self.mounts.len() + 1);
        let m = Mount::start_args(
            self.dir.path(),
            &name,
            &self.meta.addrs(),
            &self.secret_file,
            "4+2",
            extra,
        );
        self.mounts.push(m);
        self.mounts.len() - 1
    }

    /// Starts one more, empty chunkserver (`chunk-N`, the next number) and waits until the
    /// leader lists it as up. Returns its index in `chunks`.
    pub async fn add_chunkserver(&mut self) -> usize {
        self.add_chunkserver_with(ChunkOptions::default()).await
    }

    /// Like [`Self::add_chunkserver`], with the server's flags given (`meta` is filled in).
    pub async fn add_chunkserver_with(&mut self, opts: ChunkOptions) -> usize {
        let n = self.chunks.len() + 1;
        let name = format!("chunk-{n}");
        let data = self.dir.join(&name);
        let secret = tessera_rpc::Secret::load(&self.secret_file).expect("load the secret");
        let opts = ChunkOptions {
            meta: self.meta.addrs(),
            ..opts
        };
        let server =
            Chunkserver::start(&self.dir, &name, &data, (&self.secret_file, &secret), &opts).await;
        let addr = server.addr.clone();
        self.chunks.push(server);
        let client = self.meta.client(MetaClientOptions::default());
        let started = Instant::now();
        loop {
            let up = client.list_chunkservers().await.is_ok_and(|l| {
                l.iter()
                    .any(|s| s.addr == addr && s.state == ChunkserverState::Up)
            });
            if up {
                return n - 1;
            }
            assert!(started.elapsed() < START_TIMEOUT, "{name} did not register");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Drops the kernel's clean page cache, so reads go to the file system again.
pub fn drop_caches() {
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}
