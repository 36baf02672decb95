#!/usr/bin/env bash
# A development cluster on 127.0.0.1: metaservers, chunkservers and one FUSE mount.
#
#   scripts/dev-cluster.sh up [DIR]     build if needed, start, mount at DIR/mnt
#   scripts/dev-cluster.sh down [DIR]   unmount and stop exactly the processes `up` started
#   scripts/dev-cluster.sh add-chunk [DIR]  start one more, empty chunkserver (next number)
#   scripts/dev-cluster.sh restart DIR meta-N|chunk-N   stop one process and start it again
#   scripts/dev-cluster.sh restart DIR mount   hand the mount to a new serving process
#
# The mount runs supervised (`tessera mount --supervise`): its pid file names the
# supervisor, which keeps the FUSE connection while serving processes come and go.
# DIR defaults to /tmp/tessera-dev. Environment: META (3), CHUNKS (6), EC (4+2),
# TESSERA_BIN (default: <target>/debug/tessera, built with cargo if missing), TLS (0): TLS=1
# on the first `up` of a DIR makes a CA and node certificates in DIR/tls (scripts/gen-tls.sh,
# needs openssl) and from then on every process of that DIR runs with --tls-cert/--tls-key/
# --tls-ca (cluster.env then exports TESSERA_TLS_* for admin commands). MOUNT_ARGS: more
# flags for the mount (e.g. MOUNT_ARGS=--caps), split on spaces.
# `up` writes DIR/cluster.env (source it: TESSERA_META, TESSERA_SECRET_FILE, TESSERA_MOUNT)
# and DIR/pids/{meta-N,chunk-N,mount}.pid; logs go to DIR/logs/. Ports are kept in
# DIR/ports so a second `up` on the same DIR restarts the same cluster with its data.
set -euo pipefail

cmd=${1:-}
dir=${2:-/tmp/tessera-dev}
META=${META:-3}
CHUNKS=${CHUNKS:-6}
EC=${EC:-4+2}
read -r -a mount_args <<<"${MOUNT_ARGS:-}"
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${TESSERA_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/tessera}

die() { echo "dev-cluster: $*" >&2; exit 1; }

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# A port nothing listens on (bash's /dev/tcp connect fails on a free port), below the
# kernel's ephemeral range: a port in that range may be taken at any moment as the source
# port of an outgoing connection, and the server then fails with "Address already in use".
free_port() {
  local p low
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  ((low > 11000)) || low=32768
  for _ in $(seq 200); do
    p=$((10000 + RANDOM % (low - 10000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      if ! grep -qw "$p" "$dir/ports" 2>/dev/null; then echo "$p"; return; fi
    fi
  done
  die "no free port found"
}

# Whether this DIR's cluster runs with TLS (decided by TLS=1 at its first `up`).
tls_on() { [[ -f $dir/tls/ca.pem ]]; }

# Sets tls_args to the --tls-* flags of node NAME (making its certificate if missing), or to
# nothing without TLS.
tls_args=()
set_tls_args() {
  tls_args=()
  tls_on || return 0
  [[ -f $dir/tls/$1.pem ]] || "$root/scripts/gen-tls.sh" "$dir/tls" "$1" || die "cannot make a certificate for $1"
  tls_args=(--tls-cert "$dir/tls/$1.pem" --tls-key "$dir/tls/$1.key" --tls-ca "$dir/tls/ca.pem")
}

up() {
  mkdir -p "$dir"/{pids,logs,mnt}
  dir=$(cd "$dir" && pwd)
  if [[ ${TLS:-0} == 1 ]] && ! tls_on; then
    "$root/scripts/gen-tls.sh" "$dir/tls" client || die "cannot make TLS certificates (is openssl installed?)"
  fi
  for f in "$dir"/pids/*.pid; do
    alive "$f" && die "$f is running: run '$0 down $dir' first"
  done
  if [[ -z ${TESSERA_BIN:-} && ! -x $bin ]]; then
    echo "building tessera..."
    (cd "$root" && cargo build -p tessera-cli) || die "build failed"
  fi
  [[ -x $bin ]] || die "$bin not found: build it with 'cargo build -p tessera-cli' or set TESSERA_BIN"
  local secret=$dir/secret
  [[ -f $secret ]] || "$bin" gen-secret "$secret" >/dev/null
  touch "$dir/ports"
  local peers="" addrs="" i p
  for i in $(seq "$META"); do
    p=$(grep "^meta-$i=" "$dir/ports" | cut -d= -f2 || true)
    if [[ -z $p ]]; then p=$(free_port); echo "meta-$i=$p" >>"$dir/ports"; fi
    peers+="${peers:+,}$i=127.0.0.1:$p"
    addrs+="${addrs:+,}127.0.0.1:$p"
  done
  echo "$peers" >"$dir/peers"
  for i in $(seq "$META"); do start_meta "$i"; done
  # Chunkservers added later with add-chunk are restarted too.
  local chunks=$CHUNKS added
  added=$(grep -c '^chunk-' "$dir/ports" || true)
  ((added > chunks)) && chunks=$added
  for i in $(seq "$chunks"); do start_chunk "$i" "$addrs" "$secret"; done
  local deadline=$((SECONDS + 60))
  for i in $(seq "$chunks"); do wait_chunk "$i" "$deadline"; done
  set_tls_args client
  "$bin" mount "$dir/mnt" --supervise --meta "$addrs" --secret-file "$secret" --ec "$EC" "${tls_args[@]}" \
    "${mount_args[@]}" >>"$dir/logs/mount.log" 2>&1 &
  echo $! >"$dir/pids/mount.pid"
  until grep -q " $dir/mnt " /proc/self/mountinfo; do
    alive "$dir/pids/mount.pid" || die "the mount exited; see $dir/logs/mount.log"
    ((SECONDS < deadline)) || die "not mounted after 60 s; see $dir/logs/mount.log"
    sleep 0.2
  done
  cat >"$dir/cluster.env" <<ENV
export TESSERA_META=$addrs
export TESSERA_SECRET_FILE=$secret
export TESSERA_MOUNT=$dir/mnt
ENV
  if tls_on; then
    cat >>"$dir/cluster.env" <<ENV
export TESSERA_TLS_CERT=$dir/tls/client.pem
export TESSERA_TLS_KEY=$dir/tls/client.key
export TESSERA_TLS_CA=$dir/tls/ca.pem
ENV
  fi
  cat <<MSG
Tessera is up: $META metaservers, $CHUNKS chunkservers, EC $EC, mounted at $dir/mnt$(tls_on && echo ", TLS")
  . $dir/cluster.env      # TESSERA_META, TESSERA_SECRET_FILE, TESSERA_MOUNT
  ls \$TESSERA_MOUNT       # use it like any directory
  logs: $dir/logs/        stop: $0 down $dir
MSG
}

# Starts metaserver N with the group in DIR/peers (member 1 forms the group on first start;
# --init is ignored by a member that already belongs to one).
start_meta() {
  local i=$1 p init=()
  p=$(grep "^meta-$i=" "$dir/ports" | cut -d= -f2)
  [[ $i == 1 ]] && init=(--init)
  set_tls_args "meta-$i"
  "$bin" meta --id "$i" --listen "127.0.0.1:$p" --data "$dir/meta-$i" --peers "$(cat "$dir/peers")" \
    --secret-file "$dir/secret" "${init[@]}" "${tls_args[@]}" >>"$dir/logs/meta-$i.log" 2>&1 &
  echo $! >"$dir/pids/meta-$i.pid"
}

# Stops one process of the cluster (SIGTERM, then SIGKILL after 5 s) and starts it again
# with the same flags: `restart meta-N` or `restart chunk-N`. Waits only until it runs (and a
# chunkserver until its heartbeat is acknowledged); scripts/rolling-restart.sh waits for more.
restart_one() {
  local what=$1
  [[ -f $dir/cluster.env ]] || die "no cluster at $dir (run '$0 up $dir' first)"
  dir=$(cd "$dir" && pwd)
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
  [[ -x $bin ]] || die "$bin not found"
  case $what in
    meta-[0-9]*)
      [[ -f $dir/peers ]] || die "$dir/peers is missing (cluster started by an older dev-cluster.sh: down and up again)"
      stop_pid "$dir/pids/$what.pid"
      start_meta "${what#meta-}"
      ;;
    chunk-[0-9]*)
      local i=${what#chunk-} acked
      stop_pid "$dir/pids/$what.pid"
      acked=$(grep -c "acknowledged" "$dir/logs/$what.log" 2>/dev/null || true)
      start_chunk "$i" "$TESSERA_META" "$TESSERA_SECRET_FILE"
      local deadline=$((SECONDS + 60))
      until (($(grep -c "acknowledged" "$dir/logs/$what.log" 2>/dev/null || true) > acked)); do
        alive "$dir/pids/$what.pid" || die "$what exited; see $dir/logs/$what.log"
        ((SECONDS < deadline)) || die "$what did not reach the metadata leader; see $dir/logs/"
        sleep 0.2
      done
      ;;
    mount)
      # A planned handover: the supervisor (and the kernel mount) stay.
      "$bin" mount --restart "$dir/mnt" >>"$dir/logs/mount.log" 2>&1 ||
        die "the mount's handover failed; see $dir/logs/mount.log"
      ;;
    *) die "restart: name meta-N, chunk-N or mount, not '$what'" ;;
  esac
  echo "$what restarted (pid $(cat "$dir/pids/$what.pid"))"
}

# Starts chunkserver N (its port kept in DIR/ports, its data in DIR/chunk-N).
start_chunk() {
  local i=$1 addrs=$2 secret=$3 p
  p=$(grep "^chunk-$i=" "$dir/ports" | cut -d= -f2 || true)
  if [[ -z $p ]]; then p=$(free_port); echo "chunk-$i=$p" >>"$dir/ports"; fi
  set_tls_args "chunk-$i"
  "$bin" chunk --listen "127.0.0.1:$p" --data "$dir/chunk-$i" --meta "$addrs" \
    --secret-file "$secret" --heartbeat-ms 500 "${tls_args[@]}" >>"$dir/logs/chunk-$i.log" 2>&1 &
  echo $! >"$dir/pids/chunk-$i.pid"
}

# Writes need every chunkserver registered with the leader: wait for its first acknowledged
# heartbeat.
wait_chunk() {
  local i=$1 deadline=$2
  until grep -q "acknowledged" "$dir/logs/chunk-$i.log" 2>/dev/null; do
    alive "$dir/pids/chunk-$i.pid" || die "chunk-$i exited; see $dir/logs/chunk-$i.log"
    ((SECONDS < deadline)) || die "chunk-$i did not reach the metadata leader; see $dir/logs/"
    sleep 0.2
  done
}

add_chunk() {
  [[ -f $dir/cluster.env ]] || die "no cluster at $dir (run '$0 up $dir' first)"
  dir=$(cd "$dir" && pwd)
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
  [[ -x $bin ]] || die "$bin not found"
  local n=1
  while [[ -e $dir/chunk-$n || -e $dir/pids/chunk-$n.pid ]] || grep -q "^chunk-$n=" "$dir/ports"; do
    n=$((n + 1))
  done
  start_chunk "$n" "$TESSERA_META" "$TESSERA_SECRET_FILE"
  wait_chunk "$n" $((SECONDS + 60))
  echo "chunk-$n is up ($(grep "^chunk-$n=" "$dir/ports" | cut -d= -f2)); pid file $dir/pids/chunk-$n.pid"
}

stop_pid() {
  local f=$1 pid
  alive "$f" || { rm -f "$f"; return 0; }
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

down() {
  [[ -d $dir ]] || die "$dir does not exist"
  dir=$(cd "$dir" && pwd)
  if grep -q " $dir/mnt " /proc/self/mountinfo; then
    fusermount3 -u "$dir/mnt" 2>/dev/null || fusermount3 -uz "$dir/mnt" || umount -l "$dir/mnt" || true
  fi
  [[ -f $dir/pids/mount.pid ]] && stop_pid "$dir/pids/mount.pid"
  for f in "$dir"/pids/chunk-*.pid "$dir"/pids/meta-*.pid; do
    [[ -e $f ]] && stop_pid "$f"
  done
  echo "Tessera at $dir is down (data kept; '$0 up $dir' restarts it)"
}

case $cmd in
  up) up ;;
  down) down ;;
  add-chunk) add_chunk ;;
  restart)
    [[ $# -ge 3 ]] || die "usage: $0 restart DIR meta-N|chunk-N|mount"
    restart_one "$3"
    ;;
  *) echo "usage: $0 up|down|add-chunk [DIR] | restart DIR meta-N|chunk-N|mount" >&2; exit 2 ;;
esac
