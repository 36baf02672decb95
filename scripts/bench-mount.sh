#!/usr/bin/env bash
# Mount benchmarks against a running dev cluster (scripts/dev-cluster.sh up DIR):
#   scripts/bench-mount.sh MOUNT [JOBS...]
# JOBS: seqwrite seqread randread randwrite create stat (default: all, in this order, as the
# peers' bench.sh runs them: every fio job uses the one 1 GiB file seqwrite writes, so the
# random jobs read and overwrite real data; randwrite ends with an fsync). RUNTIME (30) sets
# the fio time of the random jobs, NFILES (10000) the files of create and stat. Prints one
# "job: figure" line per job.
set -euo pipefail
mnt=${1:?usage: bench-mount.sh MOUNT [JOBS...]}
shift
jobs=("$@")
[[ ${#jobs[@]} -gt 0 ]] || jobs=(seqwrite seqread randread randwrite create stat)
RUNTIME=${RUNTIME:-30}
work=$mnt/bench.$$
mkdir -p "$work"
fio_iops() { python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(round(j[sys.argv[1]]["iops"]))' "$1"; }
fio_bw() { python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(round(j[sys.argv[1]]["bw_bytes"]/1e6,1))' "$1"; }
for job in "${jobs[@]}"; do
  case $job in
    create)
      python3 - "$work/c" <<'PY'
import os, sys, time
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
t = time.perf_counter()
for i in range(int(os.environ.get("NFILES", "10000"))):
    os.close(os.open(f"{d}/f{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
print(f"create: {int(os.environ.get('NFILES', '10000')) / (time.perf_counter() - t):.0f}/s")
PY
      ;;
    stat)
      python3 - "$work/c" <<'PY'
import os, sys, time
d = sys.argv[1]
time.sleep(1.5)  # let the kernel's cached entries from the create run expire
t = time.perf_counter()
for i in range(int(os.environ.get("NFILES", "10000"))):
    os.stat(f"{d}/f{i}")
print(f"stat: {int(os.environ.get('NFILES', '10000')) / (time.perf_counter() - t):.0f}/s")
PY
      ;;
    randwrite|randread)
      rw=$job; key=${job#rand}
      extra=()
      [[ $job == randwrite ]] && extra=(--end_fsync=1)
      sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
      out=$(fio --name=$job --filename="$work/fiodata" --size=1G --bs=4k --rw=$rw --direct=1 \
        --ioengine=psync --iodepth=1 --numjobs=1 --time_based --runtime="$RUNTIME" \
        "${extra[@]}" --output-format=json 2>/dev/null)
      echo "$job: $(fio_iops "$key" <<<"$out") IOPS"
      ;;
    seqwrite)
      out=$(fio --name=seqwrite --filename="$work/fiodata" --size=1G --bs=1M --rw=write \
        --end_fsync=1 --ioengine=psync --output-format=json 2>/dev/null)
      echo "seqwrite: $(fio_bw write <<<"$out") MB/s"
      ;;
    seqread)
      sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
      out=$(fio --name=seqread --filename="$work/fiodata" --size=1G --bs=1M --rw=read \
        --ioengine=psync --output-format=json 2>/dev/null)
      echo "seqread: $(fio_bw read <<<"$out") MB/s"
      ;;
    *) echo "unknown job $job" >&2; exit 2 ;;
  esac
done
