#!/usr/bin/env bash
# File-system benchmark: the fio jobs in scripts/fio/ and a metadata job, run on a Tessera
# mount, a local directory on the same disk and tmpfs in one run, plus any other mount points
# given as label=DIR (comparison mode). Prints one Markdown table of medians.
#
#   scripts/bench.sh [label=DIR ...]
#
# By default it builds `tessera` (release), starts its own dev cluster in a temporary folder
# (scripts/dev-cluster.sh: 3 metaservers, 6 chunkservers, EC 4+2), mounts a tmpfs, makes a
# folder under /var/tmp, runs every job on every target, and tears all of it down on exit,
# also on failure or Ctrl-C. Extra targets only get a scratch subfolder, removed at the end.
#
# Jobs (for each N in JOBS, default "1 4"; each job has its own file, SIZE/N bytes):
#   seqwrite   1 MiB buffered writes, fsync at the end (end_fsync)      -> MB/s
#   seqread    1 MiB buffered reads of those files, after drop_caches    -> MB/s
#   randread   4 KiB O_DIRECT reads, psync, iodepth 1, RUNTIME s         -> IOPS
#   randwrite  4 KiB O_DIRECT writes, psync, iodepth 1, RUNTIME s        -> IOPS
#   meta       NFILES empty files in one directory: create, stat (after drop_caches), unlink,
#              by N processes (MDJOBS, default "1 4") each on NFILES/N names   -> ops/s
#   tree       a real source tree of small files (TREE): untar (files/s), `ls -lR` after
#              drop_caches, read every file back after drop_caches (`tar c | cat`), `rm -rf`
#              (seconds each; the ratio column is a speed ratio, above 1 = Tessera faster)
# CPU: utime+stime from /proc/<pid>/stat of the processes serving the target per MiB moved by
# seqwrite/seqread/randread: for the built-in cluster its own metaservers, chunkservers and
# mount (by pid file), likewise for a target DIR that is the mnt/ of a scripts/dev-cluster.sh
# folder (its pids/), for other mounts every process whose name starts with tessera, mfs or
# gluster (chosen from the mount's type). For clusters with pid files the mount process alone
# is reported too ("client CPU"). So two builds compare in one run: start a dev cluster with
# each (TESSERA_BIN=... scripts/dev-cluster.sh up DIR) and give TARGETS="" old=A/mnt new=B/mnt.
#
# Environment:
#   REPS=1          rounds; the target order is rotated each round, medians are reported
#   SIZE=1G         bytes per seqwrite/seqread run, split over the N jobs
#   RUNTIME=30      seconds per randread/randwrite run
#   NFILES=10000    files per metadata run
#   JOBS="1 4"  MDJOBS="1 4"  TESTS="seqwrite seqread randread randwrite meta tree"
#   TREE=FILE.tar   the tree job's tarball; default: crates from the local cargo registry
#                   (~/.cargo/registry/src), those with the most files first, until TREE_FILES
#   TREE_FILES=2000 least regular files in the default tree
#   TARGETS="local tmpfs tessera"   built-in targets to run (TARGETS="" for extras only)
#   LOCAL_BASE=/var/tmp             where the local target's folder goes
#   RATIO=label     add a column tessera/label (default: the first label=DIR given)
#   OUT=DIR         raw results (fio JSON, results.tsv, table.md); default a kept /tmp folder
#   TESSERA_BIN     use this binary instead of building target/release/tessera
#   EC, META, CHUNKS  passed to dev-cluster.sh (defaults 4+2, 3, 6), and MOUNT_ARGS (e.g. --caps)
# Needs root (drop_caches, mounting tmpfs), fio and python3. Quick smoke run:
#   SIZE=64M RUNTIME=5 NFILES=500 scripts/bench.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
fiodir=$root/scripts/fio
REPS=${REPS:-1}
SIZE=${SIZE:-1G}
RUNTIME=${RUNTIME:-30}
NFILES=${NFILES:-10000}
JOBS=${JOBS:-1 4}
MDJOBS=${MDJOBS:-1 4}
TESTS=${TESTS:-seqwrite seqread randread randwrite meta tree}
TREE=${TREE:-}
TREE_FILES=${TREE_FILES:-2000}
TARGETS=${TARGETS-local tmpfs tessera}
LOCAL_BASE=${LOCAL_BASE:-/var/tmp}
export EC=${EC:-4+2} META=${META:-3} CHUNKS=${CHUNKS:-6}

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

# ---------------------------------------------------------------- arguments and checks
labels=() dirs=() extra=()
for a in "$@"; do
  case $a in
    -h | --help) usage; exit 0 ;;
    *=*) extra+=("$a") ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ $EUID -eq 0 ]] || die "needs root (drop_caches, tmpfs mount)"
command -v fio >/dev/null || die "fio is missing: apt-get install -y fio"
command -v python3 >/dev/null || die "python3 is missing"
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer"

size_bytes() { # 64M, 1G, 1048576 -> bytes (K/M/G/T are powers of 1024)
  local s=${1^^} m=1
  case $s in
    *K) m=$((1 << 10)) ;; *M) m=$((1 << 20)) ;; *G) m=$((1 << 30)) ;; *T) m=$((1 << 40)) ;;
  esac
  s=${s%[KMGT]}
  [[ $s =~ ^[0-9]+$ ]] || die "bad size '$1'"
  echo $((s * m))
}
size_mib=$(($(size_bytes "$SIZE") >> 20))
((size_mib >= 4)) || die "SIZE must be at least 4M"

# ---------------------------------------------------------------- setup and teardown
work=$(mktemp -d /tmp/tessera-bench.XXXXXX)
OUT=${OUT:-$(mktemp -d /tmp/tessera-bench-results.XXXXXX)}
mkdir -p "$OUT"
cluster="" tmpfs_mnt="" local_dir="" child="" scratch=()

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [[ -n $child ]]; then kill "$child" 2>/dev/null; wait "$child" 2>/dev/null; fi
  local s
  for s in "${scratch[@]}"; do rm -rf "$s"; done
  if [[ -n $cluster ]]; then
    "$root/scripts/dev-cluster.sh" down "$cluster" >/dev/null
    rm -rf "$cluster"
  fi
  if [[ -n $tmpfs_mnt ]] && mountpoint -q "$tmpfs_mnt"; then umount "$tmpfs_mnt" || umount -l "$tmpfs_mnt"; fi
  [[ -n $local_dir ]] && rm -rf "$local_dir"
  rm -rf "$work"
  ((rc == 0)) || log "failed (exit $rc); everything this run started is stopped"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

add_target() { # label dir
  [[ $1 =~ ^[A-Za-z0-9_.+-]+$ ]] || die "bad label '$1'"
  local l
  for l in "${labels[@]}"; do [[ $l != "$1" ]] || die "label '$1' given twice"; done
  labels+=("$1") dirs+=("$2")
}

for t in $TARGETS; do
  case $t in
    local)
      local_dir=$(mktemp -d "$LOCAL_BASE/tessera-bench-local.XXXXXX")
      add_target local "$local_dir" ;;
    tmpfs)
      tmpfs_mnt=$work/tmpfs
      mkdir -p "$tmpfs_mnt"
      mount -t tmpfs -o "size=$((size_mib * 2 + 256))m,mode=0755" tmpfs "$tmpfs_mnt"
      add_target tmpfs "$tmpfs_mnt" ;;
    tessera)
      bin=${TESSERA_BIN:-}
      if [[ -z $bin ]]; then
        log "building tessera (release)"
        (cd "$root" && cargo build --release -p tessera-cli --quiet) || die "build failed"
        bin=${CARGO_TARGET_DIR:-$root/target}/release/tessera
      fi
      cluster=$work/cluster
      log "starting a dev cluster: $META metaservers, $CHUNKS chunkservers, EC $EC"
      TESSERA_BIN=$bin "$root/scripts/dev-cluster.sh" up "$cluster" >/dev/null
      add_target tessera "$cluster/mnt" ;;
    *) die "unknown built-in target '$t' (local, tmpfs, tessera)" ;;
  esac
done
for a in "${extra[@]}"; do
  d=${a#*=}
  [[ -d $d ]] || die "$d is not a directory"
  add_target "${a%%=*}" "$(cd "$d" && pwd)"
done
((${#labels[@]} > 0)) || die "no targets"
if [[ -z ${RATIO:-} && ${#extra[@]} -gt 0 ]]; then RATIO=${extra[0]%%=*}; fi
RATIO=${RATIO:-}

# ---------------------------------------------------------------- measuring
# The metadata job: create, stat (after drop_caches) and unlink NFILES empty files in one
# directory, split over N processes that start each phase together; ops/s per phase.
cat >"$work/meta.py" <<'PY'
import multiprocessing as mp, os, sys, time
d, nfiles, nproc, label, rep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]

def phase(kind, w, barrier, res):
    names = [os.path.join(d, f"f{i}") for i in range(w, nfiles, nproc)]
    barrier.wait()
    t = time.perf_counter()
    if kind == "create":
        for f in names:
            os.close(os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    elif kind == "stat":
        for f in names:
            os.stat(f)
    else:
        for f in names:
            os.unlink(f)
    res[w] = (t, time.perf_counter())

for kind in ("create", "stat", "unlink"):
    if kind == "stat":
        os.sync()
        open("/proc/sys/vm/drop_caches", "w").write("3\n")
    with mp.Manager() as mgr:
        res, barrier = mgr.dict(), mp.Barrier(nproc)
        ps = [mp.Process(target=phase, args=(kind, w, barrier, res)) for w in range(nproc)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        if any(p.exitcode != 0 for p in ps):
            sys.exit(f"{kind} failed")
        t0 = min(v[0] for v in res.values())
        t1 = max(v[1] for v in res.values())
    print(f"{label}\t{rep}\tmeta\t{nproc}\t{kind}\t{nfiles / (t1 - t0)}")
PY

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# The tree job's tarball: TREE, or crates from the local cargo registry, most files first
# (name breaks ties), until at least TREE_FILES regular files.
tree_tar=""
make_tree() {
  if [[ -n $TREE ]]; then
    [[ -f $TREE ]] || die "TREE=$TREE is not a file"
    tree_tar=$TREE
  else
    local src picked=() n total=0 crate
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ 2>/dev/null | head -1)
    [[ -n $src ]] || die "no cargo registry sources to build the tree job from; set TREE=FILE.tar"
    while read -r n crate; do
      picked+=("$crate")
      total=$((total + n))
      ((total < TREE_FILES)) || break
    done < <(cd "$src" && for c in */; do echo "$(find "$c" -type f | wc -l) ${c%/}"; done |
      sort -k1,1nr -k2,2)
    ((total >= TREE_FILES)) || die "the cargo registry holds only $total files; set TREE=FILE.tar"
    tree_tar=$work/tree.tar
    tar cf "$tree_tar" -C "$src" "${picked[@]}"
    log "tree job: ${picked[*]}"
  fi
  tree_nfiles=$(tar tvf "$tree_tar" | grep -c '^-')
  tree_mb=$(($(tar xOf "$tree_tar" | wc -c) / 1000000))
  log "tree job: $tree_nfiles files, $tree_mb MB"
}

seconds_since() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$EPOCHREALTIME"; }

run_tree() { # label rep dir
  local label=$1 rep=$2 dir=$3/tree t
  rm -rf "$dir"
  mkdir -p "$dir"
  t=$EPOCHREALTIME
  if ! run_child tar xf "$tree_tar" -C "$dir"; then
    log "$label: untar failed"
    record "$label" "$rep" tree 1 fail 0
    rm -rf "$dir"
    return 0
  fi
  record "$label" "$rep" tree 1 untar "$(python3 -c "print($tree_nfiles / $(seconds_since "$t"))")"
  drop_caches
  t=$EPOCHREALTIME
  run_child ls -lR "$dir" >/dev/null
  record "$label" "$rep" tree 1 ls_lR_s "$(seconds_since "$t")"
  drop_caches
  # Through a pipe: GNU tar reads nothing when its output is /dev/null.
  t=$EPOCHREALTIME
  run_child bash -c 'set -o pipefail; tar cf - -C "$1" . | cat >/dev/null' - "$dir"
  record "$label" "$rep" tree 1 readback_s "$(seconds_since "$t")"
  t=$EPOCHREALTIME
  run_child rm -rf "$dir"
  record "$label" "$rep" tree 1 rm_s "$(seconds_since "$t")"
}

# The processes that serve a directory, by name prefix, from the type of its mount.
cpu_family() {
  local fstype source
  read -r fstype source < <(findmnt -n -o FSTYPE,SOURCE --target "$1" 2>/dev/null || true)
  case ${fstype:-} in fuse*) ;; *) echo -; return ;; esac
  case "$fstype ${source:-}" in
    *tessera*) echo tessera ;;
    *mfs*) echo mfs ;;
    *gluster*) echo gluster ;;
    *) echo - ;;
  esac
}

# Total utime+stime in seconds of the processes named by $1: a folder of *.pid files (our
# own cluster: other Tessera clusters may be running on the machine), one .pid file, or a
# name prefix.
fs_cpu() {
  [[ $1 != - ]] || { echo 0; return; }
  python3 - "$1" <<'PY'
import glob, os, sys
sel, hz, total = sys.argv[1], os.sysconf("SC_CLK_TCK"), 0
if sel.endswith(".pid"):
    pids = [open(sel).read().strip()]
elif sel.startswith("/"):
    pids = [open(f).read().strip() for f in glob.glob(os.path.join(sel, "*.pid"))]
else:
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
for p in pids:
    try:
        s = open(f"/proc/{p}/stat").read()
    except OSError:
        continue
    if sel.startswith("/") or s[s.index("(") + 1:s.rindex(")")].startswith(sel):
        f = s[s.rindex(")") + 2:].split()
        total += int(f[11]) + int(f[12])
print(total / hz)
PY
}

record() { echo "$*" | tr ' ' '\t' >>"$OUT/results.tsv"; } # label rep test n metric value

# Run a command in the background so that the EXIT trap can stop it.
run_child() { "$@" & child=$!; wait "$child"; local rc=$?; child=""; return "$rc"; }

run_fio() { # label rep test n dir family
  local label=$1 rep=$2 test=$3 n=$4 dir=$5 fam=$6 c0 c1 m0=0 m1=0 json=$OUT/$1/rep$2/$3-$4.json
  local client=-
  [[ -f $fam/mount.pid ]] && client=$fam/mount.pid
  mkdir -p "$(dirname "$json")"
  c0=$(fs_cpu "$fam")
  m0=$(fs_cpu "$client")
  if ! BENCH_DIR=$dir BENCH_NUMJOBS=$n BENCH_FILESIZE=$((size_mib / n))M BENCH_RUNTIME=$RUNTIME \
    run_child fio --output-format=json --output="$json" "$fiodir/$test.fio" >/dev/null; then
    log "$label: fio $test N=$n failed"
    record "$label" "$rep" "$test" "$n" fail 0
    return 0
  fi
  c1=$(fs_cpu "$fam")
  m1=$(fs_cpu "$client")
  python3 - "$json" "$label" "$rep" "$test" "$n" "$c0" "$c1" "$fam" "$m0" "$m1" "$client" <<'PY' >>"$OUT/results.tsv"
import json, sys
path, label, rep, test, n, c0, c1, fam, m0, m1, client = sys.argv[1:]
c0, c1, m0, m1 = float(c0), float(c1), float(m0), float(m1)
j = json.load(open(path))["jobs"][0]
d = j["write" if "write" in test else "read"]
mib = d["io_bytes"] / 1048576
rows = [("MBps", d["bw_bytes"] / 1e6)] if test.startswith("seq") else [("IOPS", d["iops"])]
if fam != "-" and mib > 0:
    rows.append(("cpu_ms_per_MiB", (c1 - c0) * 1e3 / mib))
if client != "-" and mib > 0:
    rows.append(("client_cpu_ms_per_MiB", (m1 - m0) * 1e3 / mib))
for m, v in rows:
    print(f"{label}\t{rep}\t{test}\t{n}\t{m}\t{v}")
PY
}

run_meta() { # label rep n dir
  local label=$1 rep=$2 n=$3 dir=$4/meta
  rm -rf "$dir"
  mkdir -p "$dir"
  if ! run_child python3 "$work/meta.py" "$dir" "$NFILES" "$n" "$label" "$rep" >>"$OUT/results.tsv"; then
    log "$label: metadata job N=$n failed"
    record "$label" "$rep" meta "$n" fail 0
  fi
  rm -rf "$dir"
}

run_target() { # label dir rep
  local label=$1 base=$2 rep=$3 fam n dir
  fam=$(cpu_family "$base")
  if [[ $label == tessera && -n $cluster && $base == "$cluster/mnt" ]]; then fam=$cluster/pids; fi
  # The mount of a scripts/dev-cluster.sh folder: its own processes, by pid file.
  if [[ $(basename "$base") == mnt && -f $(dirname "$base")/pids/mount.pid ]]; then
    fam=$(dirname "$base")/pids
  fi
  dir=$base/tessera-bench.$$
  mkdir -p "$dir"
  scratch+=("$dir")
  log "round $rep: $label ($base), load $(cut -d' ' -f1-3 /proc/loadavg)"
  for n in $JOBS; do
    for t in seqwrite seqread randread randwrite; do
      [[ " $TESTS " == *" $t "* ]] || continue
      [[ $t != seqwrite ]] || rm -f "$dir"/fiodata.*
      drop_caches
      run_fio "$label" "$rep" "$t" "$n" "$dir" "$fam"
    done
    rm -f "$dir"/fiodata.*
  done
  if [[ " $TESTS " == *" meta "* ]]; then
    for n in $MDJOBS; do run_meta "$label" "$rep" "$n" "$dir"; done
  fi
  if [[ " $TESTS " == *" tree "* ]]; then run_tree "$label" "$rep" "$dir"; fi
  rm -rf "$dir"
}

: >"$OUT/results.tsv"
tree_nfiles=0 tree_mb=0
if [[ " $TESTS " == *" tree "* ]]; then make_tree; fi
started=$(date -u '+%Y-%m-%d %H:%M UTC')
load0=$(cut -d' ' -f1-3 /proc/loadavg)
ntargets=${#labels[@]}
for ((r = 1; r <= REPS; r++)); do
  for ((i = 0; i < ntargets; i++)); do
    k=$(((i + r - 1) % ntargets))
    run_target "${labels[$k]}" "${dirs[$k]}" "$r"
  done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- the table
{
  echo "Run $started, REPS=$REPS, SIZE=$SIZE, RUNTIME=${RUNTIME}s, NFILES=$NFILES, EC $EC;" \
    "load average at start $load0, at end $load1. Medians over rounds."
  echo
  python3 - "$OUT/results.tsv" "$SIZE" "$RATIO" "$tree_nfiles" "$tree_mb" "${labels[@]}" <<'PY'
import statistics, sys
path, size, ratio, tree_files, tree_mb, labels = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
tree = f"tree of {int(tree_files):,} files, {tree_mb} MB"
# Times: lower is better, so the ratio column shows the other target's time over ours.
seconds = {"ls_lR_s", "readback_s", "rm_s"}
vals, failed = {}, set()
for line in open(path):
    label, rep, test, n, metric, v = line.rstrip("\n").split("\t")
    if metric == "fail":
        failed.add((label, test, n))
    else:
        vals.setdefault((label, test, n, metric), []).append(float(v))

def med(label, test, n, metric):
    xs = vals.get((label, test, n, metric))
    return statistics.median(xs) if xs else None

def fmt(x, metric):
    if x is None:
        return "-"
    if metric.endswith("cpu_ms_per_MiB") or metric in seconds:
        return f"{x:.2f}"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"

rows = []
ns = sorted({k[2] for k in vals} | {k[2] for k in failed}, key=int)
def jobs(n, what):
    return f"{n} {what}{'' if n == '1' else 'es' if what == 'process' else 's'}"
for test, metric, name in [
    ("seqwrite", "MBps", f"seq write {size} bs=1M, end_fsync, {{}}, MB/s"),
    ("seqread", "MBps", "seq read bs=1M after drop_caches, {}, MB/s"),
    ("randread", "IOPS", "4k randread direct psync, {}, IOPS"),
    ("randwrite", "IOPS", "4k randwrite direct psync, {}, IOPS"),
    ("meta", "create", "create, {}, ops/s"),
    ("meta", "stat", "stat after drop_caches, {}, ops/s"),
    ("meta", "unlink", "unlink, {}, ops/s"),
    ("tree", "untar", f"untar {tree}, files/s"),
    ("tree", "ls_lR_s", "`ls -lR` of the tree after drop_caches, s"),
    ("tree", "readback_s", "read the tree back (tar to a pipe) after drop_caches, s"),
    ("tree", "rm_s", "`rm -rf` of the tree, s"),
    ("seqwrite", "cpu_ms_per_MiB", "FS-process CPU ms per MiB written (seq write, {})"),
    ("seqread", "cpu_ms_per_MiB", "FS-process CPU ms per MiB read (seq read, {})"),
    ("randread", "cpu_ms_per_MiB", "FS-process CPU ms per MiB read (4k randread, {})"),
    ("seqread", "client_cpu_ms_per_MiB", "client (mount) CPU ms per MiB read (seq read, {})"),
    ("randread", "client_cpu_ms_per_MiB", "client (mount) CPU ms per MiB read (4k randread, {})"),
]:
    for n in ns:
        if not any((l, test, n, metric) in vals or (l, test, n) in failed for l in labels):
            continue
        cells = []
        for l in labels:
            x = med(l, test, n, metric)
            cells.append("fail" if x is None and (l, test, n) in failed else fmt(x, metric))
        if ratio and ratio in labels and "tessera" in labels:
            a, b = med("tessera", test, n, metric), med(ratio, test, n, metric)
            if metric in seconds:
                a, b = b, a
            cells.append(f"{a / b:.2f}" if a is not None and b else "-")
        rows.append([name.format(jobs(n, "process" if test == "meta" else "job"))] + cells)

head = ["job"] + labels + ([f"tessera / {ratio}"] if ratio and ratio in labels and "tessera" in labels else [])
print("| " + " | ".join(head) + " |")
print("|---|" + "---:|" * (len(head) - 1))
for r in rows:
    print("| " + " | ".join(r) + " |")
PY
  echo
  echo "CPU: utime+stime of the processes serving the target (the built-in cluster's own"
  echo "processes; for other mounts all processes named tessera*, mfs* or gluster*); '-' where"
  echo "no user-space process serves it (local, tmpfs)."
} | tee "$OUT/table.md"
log "raw results in $OUT"
