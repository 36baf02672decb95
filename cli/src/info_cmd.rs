//! `tessera info PATH`: where a file's bytes live. The inode number the mount reports as
//! `st_ino` is the metaserver's inode number, so the file's layout is one metadata read away;
//! the chunkserver list turns the server ids in it into addresses.

use crate::cluster::{ClusterArgs, runtime};
use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use tessera_proto::fs::{FileLayout, Slice};
use tessera_proto::meta::{ChunkserverInfo, ChunkserverState, Query, Response};

/// Flags of `tessera info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A regular file inside a Tessera mount (or a directory: the layout its new files get).
    path: PathBuf,

    #[command(flatten)]
    cluster: ClusterArgs,

    /// Print one JSON object (field names documented in docs/operations.md) instead of text [default: text].
    #[arg(long)]
    json: bool,
}

/// One slice of a chunk.
#[derive(Debug, Serialize)]
struct SliceRow {
    /// Offset within the chunk.
    offset: u64,
    len: u64,
    /// Stripe id (hex), `null` for a hole.
    stripe: Option<String>,
    /// Offset of the slice's first byte within the stripe's data.
    stripe_offset: Option<u64>,
}

#[derive(Debug, Serialize)]
struct ChunkRow {
    index: u64,
    slices: Vec<SliceRow>,
}

#[derive(Debug, Serialize)]
struct ShardRow {
    /// Position in the stripe: 0..k are data shards, k..k+m parity.
    index: usize,
    parity: bool,
    /// Shard id: BLAKE3 of its bytes, 64 hex digits.
    shard: String,
    /// Chunkserver id, 16 hex digits.
    server: String,
    /// Its address, `null` if the leader does not know the server.
    addr: Option<String>,
    /// "up", "suspect", "down" or "unknown".
    state: &'static str,
}

#[derive(Debug, Serialize)]
struct StripeRow {
    id: String,
    k: u8,
    m: u8,
    shard_len: u64,
    data_len: u64,
    shards: Vec<ShardRow>,
}

/// The whole report (`--json` prints exactly this).
#[derive(Debug, Serialize)]
struct Report {
    path: String,
    ino: u64,
    size: u64,
    /// Distinct codes used by the file's stripes, as "k+m".
    codes: Vec<String>,
    /// Largest stripe data length seen (the mount's --stripe-size, unless every stripe of
    /// the file is shorter); `null` for a file without data.
    stripe_size: Option<u64>,
    /// The layout the file was created with (`tessera layout`), e.g. "ec=6+3 stripe=8M";
    /// `null`: none, its data is in the code of the mount that wrote it.
    layout: Option<String>,
    chunks: Vec<ChunkRow>,
    stripes: Vec<StripeRow>,
}

/// Checks that `path` is in a Tessera mount, from /proc/self/mountinfo.
pub(crate) fn check_mount(path: &Path) -> anyhow::Result<()> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Ok(()); // Not Linux-like: let the metaserver lookup decide.
    };
    let mut best: Option<(PathBuf, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(point), Some(fstype), Some(source)) =
            (fields.get(4), fields.get(sep + 1), fields.get(sep + 2))
        else {
            continue;
        };
        // The mount names itself "tessera" (source) with subtype "tessera"; the kernel
        // shows the type as "fuse.tessera" or plain "fuse", depending on the mount helper.
        let fstype = if fstype.starts_with("fuse") && *source == "tessera" {
            "fuse.tessera"
        } else {
            fstype
        };
        let point = PathBuf::from(unescape(point));
        if path.starts_with(&point)
            && best
                .as_ref()
                .is_none_or(|(b, _)| point.as_os_str().len() >= b.as_os_str().len())
        {
            best = Some((point, (*fstype).to_string()));
        }
    }
    match best {
        Some((_, t)) if t == "fuse.tessera" => Ok(()),
        Some((point, t)) => bail!(
            "{} is not in a Tessera mount (it is on {t} mounted at {}); give a path under a `tessera mount`",
            path.display(),
            point.display()
        ),
        None => Ok(()),
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(digits) = s.get(i + 1..i + 4)
            && let Ok(v) = u8::from_str_radix(digits, 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn state_name(s: Option<ChunkserverState>) -> &'static str {
    match s {
        Some(ChunkserverState::Up) => "up",
        Some(ChunkserverState::Suspect) => "suspect",
        Some(ChunkserverState::Down) => "down",
        Some(ChunkserverState::Unreachable) => "unreachable from mounts",
        None => "unknown",
    }
}

fn slice_row(s: &Slice) -> SliceRow {
    SliceRow {
        offset: s.offset,
        len: s.len,
        stripe: s.data.map(|r| r.stripe.to_string()),
        stripe_offset: s.data.map(|r| r.offset),
    }
}

fn report(
    path: &Path,
    ino: u64,
    recorded: Option<String>,
    layout: FileLayout,
    servers: &[ChunkserverInfo],
) -> Report {
    let by_id: BTreeMap<u64, &ChunkserverInfo> = servers.iter().map(|s| (s.id, s)).collect();
    let codes: BTreeSet<(u8, u8)> = layout
        .stripes
        .iter()
        .map(|s| (s.layout.k, s.layout.m))
        .collect();
    // Stripes in file order: by the first slice that references each.
    let mut order: BTreeMap<tessera_proto::fs::StripeId, usize> = BTreeMap::new();
    for slice in layout.chunks.iter().flat_map(|c| &c.slices) {
        if let Some(r) = slice.data {
            let next = order.len();
            order.entry(r.stripe).or_insert(next);
        }
    }
    let mut sorted: Vec<&tessera_proto::fs::StripeInfo> = layout.stripes.iter().collect();
    sorted.sort_by_key(|s| order.get(&s.id).copied().unwrap_or(usize::MAX));
    let stripes = sorted
        .into_iter()
        .map(|s| StripeRow {
            id: s.id.to_string(),
            k: s.layout.k,
            m: s.layout.m,
            shard_len: s.layout.shard_len,
            data_len: s.layout.data_len,
            shards: s
                .layout
                .shards
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let server = by_id.get(&p.server);
                    ShardRow {
                        index: i,
                        parity: i >= usize::from(s.layout.k),
                        shard: p.shard.to_string(),
                        server: format!("{:016x}", p.server),
                        addr: server.map(|c| c.addr.clone()),
                        state: state_name(server.map(|c| c.state)),
                    }
                })
                .collect(),
        })
        .collect();
    Report {
        path: path.display().to_string(),
        ino,
        size: layout.size,
        codes: codes.iter().map(|(k, m)| format!("{k}+{m}")).collect(),
        stripe_size: layout.stripes.iter().map(|s| s.layout.data_len).max(),
        layout: recorded,
        chunks: layout
            .chunks
            .iter()
            .map(|c| ChunkRow {
                index: c.index,
                slices: c.slices.iter().map(slice_row).collect(),
            })
            .collect(),
        stripes,
    }
}

fn print_text(r: &Report) {
    println!("file         {}", r.path);
    println!("inode        {}", r.ino);
    println!("size         {} bytes", r.size);
    match (&r.codes[..], r.stripe_size) {
        ([], _) | (_, None) => println!("layout       no stored data"),
        (codes, Some(size)) => println!(
            "layout       {} (k data + m parity shards), stripes of up to {size} data bytes",
            codes.join(", ")
        ),
    }
    match &r.layout {
        Some(l) => println!("created with {l} (tessera layout)"),
        None => println!("created with no layout (the writing mount's --ec)"),
    }
    println!("chunks       {}", r.chunks.len());
    for c in &r.chunks {
        println!("  chunk {} ({} slices)", c.index, c.slices.len());
        for s in &c.slices {
            match (&s.stripe, s.stripe_offset) {
                (Some(id), Some(off)) => println!(
                    "    [{}, {}) -> stripe {id} at {off}",
                    s.offset,
                    s.offset + s.len
                ),
                _ => println!("    [{}, {}) hole", s.offset, s.offset + s.len),
            }
        }
    }
    println!("stripes      {}", r.stripes.len());
    for s in &r.stripes {
        println!(
            "  stripe {} {}+{}, {} data bytes, shards of {} bytes",
            s.id, s.k, s.m, s.data_len, s.shard_len
        );
        for sh in &s.shards {
            let role = if sh.parity {
                format!("p{}", sh.index - usize::from(s.k))
            } else {
                format!("d{}", sh.index)
            };
            println!(
                "    {role:<3} {}  on {} {} ({})",
                sh.shard,
                sh.server,
                sh.addr.as_deref().unwrap_or("-"),
                sh.state
            );
        }
    }
}

async fn gather(args: &InfoArgs, path: &Path, ino: u64) -> anyhow::Result<Report> {
    let meta = args.cluster.admin_client()?;
    let query = Query::Layout {
        ino,
        first: 0,
        last: u64::MAX,
    };
    let layout = match meta.read(query).await? {
        Ok(Response::Layout(l)) => l,
        Ok(other) => bail!("unexpected reply from the metadata leader: {other:?}"),
        Err(e) => bail!(
            "the metaservers at {} have no file with inode {ino} ({e}); is {} mounted from this cluster?",
            args.cluster.meta.join(","),
            path.display()
        ),
    };
    let recorded = match crate::layout_cmd::read(&meta, ino).await? {
        Some(Ok(l)) => Some(l.to_string()),
        Some(Err(e)) => Some(format!("unreadable: {e}")),
        None => None,
    };
    let servers = meta.list_chunkservers().await?;
    Ok(report(path, ino, recorded, layout, &servers))
}

/// A directory: the layout its new files get.
fn directory(args: &InfoArgs, path: &Path, ino: u64) -> anyhow::Result<()> {
    let meta = args.cluster.admin_client()?;
    let layout = runtime()?.block_on(crate::layout_cmd::read(&meta, ino))?;
    if args.json {
        let value = match layout {
            Some(Ok(l)) => Some(l.to_string()),
            Some(Err(e)) => Some(format!("unreadable: {e}")),
            None => None,
        };
        let obj = serde_json::json!({
            "path": path.display().to_string(),
            "ino": ino,
            "directory": true,
            "layout": value,
        });
        println!("{}", serde_json::to_string_pretty(&obj)?);
        return Ok(());
    }
    let words = match layout {
        Some(Ok(l)) => crate::layout_cmd::describe(&l),
        Some(Err(e)) => format!("unreadable ({e}); the writing mount's --ec applies"),
        None => "no layout (the writing mount's --ec and --stripe-size)".into(),
    };
    println!("directory    {}", path.display());
    println!("inode        {ino}");
    println!("new files    {words}");
    Ok(())
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let path = std::fs::canonicalize(&args.path)
        .with_context(|| format!("cannot open {}", args.path.display()))?;
    let meta =
        std::fs::metadata(&path).with_context(|| format!("cannot stat {}", path.display()))?;
    check_mount(&path)?;
    if meta.is_dir() {
        return directory(&args, &path, meta.ino());
    }
    if !meta.is_file() {
        bail!(
            "{} is not a regular file (only files have a data layout)",
            path.display()
        );
    }
    let report = runtime()?.block_on(gather(&args, &path, meta.ino()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}
