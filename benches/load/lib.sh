# lib.sh — helpers shared by benches/load/{run,write,memory}.sh. Source it; do not run it.
#
# Every server is started on 127.0.0.1 with a port found free at that moment, its PID is
# recorded in STARTED_PIDS (and the reference's data dir in REF_DIRS), and `cleanup`
# (installed as an EXIT/INT/TERM trap by `bench_init`) stops exactly those PIDs.

LOAD_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$LOAD_DIR/../.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}"
ZONE="${ZONE:-mesh.test}"
OP_TOKEN="bench-operator-token"
REF_TOKEN="ref-operator-token"
CLK_TCK="$(getconf CLK_TCK)"
# Priority of every process a benchmark starts (servers and load generators): the machine
# is shared, and a measured phase should not queue behind someone's compiler.
NICE="${NICE:--10}"
STARTED_PIDS=()
REF_DIRS=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need() {
  local missing=""
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing="$missing $c"; done
  [ -z "$missing" ] || die "missing:$missing (apt-get install -y dnsperf knot dnsutils)"
}

cleanup() {
  local rc=$?
  set +e
  for d in "${REF_DIRS[@]}"; do
    [ -f "$d/ref.pid" ] && bash "$SHARED/interop/ref-node.sh" stop ref "$d" >/dev/null 2>&1
  done
  for p in "${STARTED_PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null
  done
  for p in "${STARTED_PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  if [ -n "${WORK:-}" ] && [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; fi
  [ -n "${KEEP:-}" ] && [ -n "${WORK:-}" ] && log "kept $WORK"
  exit "$rc"
}

# bench_init: work dir, trap, binaries (built once: `cargo build --release` is a no-op when
# up to date). Sets WORK, NODE_BIN, LOADGEN.
bench_init() {
  need python3 taskset dig dnsperf curl chrt
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/dnsmesh-bench.XXXXXX")"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  local json
  json="$(cd "$ROOT" && cargo build --release --bin dnsmesh-node --bench loadgen \
            --message-format=json 2>"$WORK/build.log")" || { cat "$WORK/build.log" >&2; die "build failed"; }
  NODE_BIN="$(printf '%s\n' "$json" | python3 -c '
import json, sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "dnsmesh-node":
        print(m["executable"])')"
  LOADGEN="$(printf '%s\n' "$json" | python3 -c '
import json, sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "loadgen":
        print(m["executable"])')"
  # NODE_BIN_OVERRIDE: measure another build of the node (e.g. an older commit's) with the
  # same scripts and load generator.
  NODE_BIN="${NODE_BIN_OVERRIDE:-$NODE_BIN}"
  [ -x "$NODE_BIN" ] && [ -x "$LOADGEN" ] || die "binaries not found"
}

# A port free for both UDP and TCP on 127.0.0.1.
free_port() {
  python3 - <<'EOF'
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        u.close(); t.close()
EOF
}

# CPU ticks (utime+stime, all threads) of PID; dies with a clear message if PID is gone.
cpu_ticks() {
  [ -r "/proc/$1/stat" ] || die "server PID $1 is gone (crashed, or killed from outside)"
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
# VmRSS of PID in KiB.
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
# Pin PID and all its threads (present and future) to CPU 0, at priority $NICE.
pin0() {
  taskset -a -p 0x1 "$1" >/dev/null
  local t
  for t in /proc/"$1"/task/*; do renice -n "$NICE" -p "${t##*/}" >/dev/null 2>&1 || true; done
}
# on1 CMD...: run CMD on CPU 1 at priority $NICE (the load generator).
on1() { nice -n "$NICE" taskset -c 1 "$@"; }

wait_dns() { # PORT [SECS]
  local deadline=$(( $(date +%s) + ${2:-20} ))
  until dig @127.0.0.1 -p "$1" +norec +time=1 +tries=1 "$ZONE" SOA >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# start_knot ZONEDIR -> sets KNOT_PID KNOT_PORT. Minimal: 1 UDP worker, 1 TCP worker, no journal.
start_knot() {
  local z="$1" d="$WORK/knot"
  mkdir -p "$d/run" "$d/db"
  KNOT_PORT="$(free_port)"
  cat > "$d/knot.conf" <<EOF
server:
    rundir: "$d/run"
    listen: 127.0.0.1@$KNOT_PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$d/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$z"
    journal-content: none
    zonefile-sync: -1
    zonefile-load: whole
    semantic-checks: off
zone:
  - domain: $ZONE
    file: "zone.db"
EOF
  knotd -c "$d/knot.conf" >"$d/knot.log" 2>&1 &
  KNOT_PID=$!
  STARTED_PIDS+=("$KNOT_PID")
  wait_dns "$KNOT_PORT" || { cat "$d/knot.log" >&2; die "knotd did not answer"; }
}

# start_ours DATADIR [ENV=VAL ...] -> (the binary $NODE_BIN, the config $NODE_CONFIG or
# dnsmesh.toml) sets OURS_PID OURS_DNS_PORT OURS_HTTP OURS_READY_S
# (seconds from exec to the ready line).
start_ours() {
  local data="$1"; shift
  local out="$data.out" t0 t1 line
  mkdir -p "$(dirname "$data")"
  : > "$out"
  t0="$(date +%s.%N)"
  nice -n "$NICE" env RUST_LOG=warn DNSMESH_AUTH__OPERATOR_TOKEN="$OP_TOKEN" "$@" \
    "$NODE_BIN" --config "${NODE_CONFIG:-$ROOT/dnsmesh.toml}" --zone "$ZONE" --data-dir "$data" \
      --dns-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 >"$out" 2>"$data.err" &
  OURS_PID=$!
  STARTED_PIDS+=("$OURS_PID")
  local deadline=$(( $(date +%s) + ${OURS_WAIT_S:-120} ))
  until line="$(grep -m1 '^dnsmesh-node ready' "$out")"; do
    kill -0 "$OURS_PID" 2>/dev/null || { cat "$data.err" >&2; die "dnsmesh-node exited"; }
    [ "$(date +%s)" -lt "$deadline" ] || die "dnsmesh-node not ready"
    sleep 0.005
  done
  t1="$(date +%s.%N)"
  OURS_READY_S="$(python3 -c "print(f'{$t1 - $t0:.3f}')")"
  OURS_DNS_PORT="$(sed -n 's/.* dns=127\.0\.0\.1:\([0-9]*\).*/\1/p' <<<"$line")"
  OURS_HTTP="http://$(sed -n 's/.* http=\([^ ]*\).*/\1/p' <<<"$line")"
}

# stop_pid PID: SIGTERM, wait (up to 90 s, as the systemd unit: the first stop after a
# million writes checkpoints sled for ~20 s), then forget it.
stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 900); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local keep=() p
  for p in "${STARTED_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  STARTED_PIDS=("${keep[@]}")
}

# start_ref DIR -> sets REF_PID REF_DNS_PORT REF_HTTP. The reference (PyPI dnsmesh 0.7.5)
# as a black box via ../shared/interop/ref-node.sh: multi-tenant, operator token
# $REF_TOKEN, per-IP limits off, heartbeat off, WARNING logs (ours logs at warn too).
start_ref() {
  local d="$1"
  [ -x "${REF_VENV:-$HOME/.cache/dnsmesh-reference-venv}/bin/python" ] ||
    REF_VENV="$(bash "$SHARED/interop/setup-reference.sh")"
  export REF_VENV="${REF_VENV:-$HOME/.cache/dnsmesh-reference-venv}"
  REF_DNS_PORT="$(free_port)"
  local hp; hp="$(free_port)"
  REF_DIRS+=("$d")
  REF_PID="$(REF_HEARTBEAT=0 REF_LOG_LEVEL=WARNING REF_OPERATOR_TOKEN="$REF_TOKEN" \
    bash "$SHARED/interop/ref-node.sh" start ref "$REF_DNS_PORT" "$hp" "$d" "$ZONE" 2>/dev/null | tail -n1)"
  [ -n "$REF_PID" ] || die "reference node did not start (see $d/ref.log)"
  REF_HTTP="http://127.0.0.1:$hp"
}

# ratio A B -> A/B with 2 decimals (or "n/a").
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }

# kv KEY LINE -> value of KEY=... in a loadgen summary line.
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }
