#!/usr/bin/env bash
# soak.sh — steady state on disk and in memory under write churn.
#
#   benches/load/soak.sh [MINUTES]            (default 30)
#
# 1. Starts two of our nodes (release build, the shipped dnsmesh.toml) on loopback as each
#    other's sync peer (shared cluster token), with heartbeats on (each seeds the other,
#    one tick every HB_SECS, default 30).
# 2. Churns node A through its HTTP write API for MINUTES: new 252-byte DMP-shaped records
#    with a TTL of TTL (default 60 s) at RATE writes/s (default 380, operator token, CONNS
#    keep-alive connections), every DEL_EVERY-th (default 10) deleted right after its add.
#    Node B receives every write by sync (notify + pull) and so churns as well.
# 3. Every SAMPLE seconds (default 30) appends to $OUT (default /tmp/dnsmesh-soak.csv):
#    elapsed s, RSS KiB, data-dir bytes (du), open fds, live bytes and records (node A's
#    /metrics: dmp_store_live_bytes, dmp_records), and B's RSS and data-dir bytes.
# 4. Prints the trend: per series, the peaks of each window over the second half, the
#    least-squares slope of those peaks (per hour and relative to their mean), and the
#    ratio data dir / live bytes (last and worst over the second half). The analysis of a
#    CSV alone: `soak.sh --analyse CSV`.
# Environment: RATE, TTL, DEL_EVERY, CONNS (default 16), SAMPLE, HB_SECS, OUT, KEEP=1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

analyse() { # CSV
  python3 - "$1" <<'EOF'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]))]
if len(rows) < 4:
    print("too few samples"); sys.exit(0)
t = [float(r["t_s"]) for r in rows]
half = t[-1] / 2
second = [r for r in rows if float(r["t_s"]) >= half]
win = max(2, len(second) // 6)
def peaks(key):
    out = []
    for i in range(0, len(second) - win + 1, win):
        w = second[i:i + win]
        m = max(w, key=lambda r: float(r[key]))
        out.append((float(m["t_s"]), float(m[key])))
    return out
def slope(pts):
    n = len(pts)
    if n < 2: return 0.0
    mx = sum(p[0] for p in pts) / n; my = sum(p[1] for p in pts) / n
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else 0.0
print(f"samples {len(rows)} over {t[-1]/60:.1f} min; second half: {len(second)} samples, peaks of {win}-sample windows")
print(f"{'series':<14}{'first':>14}{'last':>14}{'peak mean':>14}{'peak slope/h':>16}{'slope/h %':>11}")
for key, unit in [("rss_kb", "KiB"), ("disk_bytes", "B"), ("fds", ""), ("live_bytes", "B"),
                  ("records", ""), ("b_rss_kb", "KiB"), ("b_disk_bytes", "B")]:
    p = peaks(key)
    mean = sum(v for _, v in p) / len(p)
    s = slope(p) * 3600
    rel = 100 * s / mean if mean else 0.0
    print(f"{key:<14}{rows[0][key]:>14}{rows[-1][key]:>14}{mean:>14.0f}{s:>16.0f}{rel:>10.1f}%")
ratios = [float(r["disk_bytes"]) / float(r["live_bytes"]) for r in second if float(r["live_bytes"]) > 0]
last = rows[-1]
lr = float(last["disk_bytes"]) / float(last["live_bytes"]) if float(last["live_bytes"]) else float("nan")
print(f"data dir / live bytes: last {lr:.2f}, worst in second half {max(ratios) if ratios else float('nan'):.2f}, best {min(ratios) if ratios else float('nan'):.2f}")
EOF
}

if [ "${1:-}" = "--analyse" ]; then analyse "$2"; exit 0; fi

MINUTES="${1:-30}"
RATE="${RATE:-380}"
TTL="${TTL:-60}"
DEL_EVERY="${DEL_EVERY:-10}"
CONNS="${CONNS:-16}"
SAMPLE="${SAMPLE:-30}"
HB_SECS="${HB_SECS:-30}"
OUT="${OUT:-/tmp/dnsmesh-soak.csv}"
SYNC_TOKEN="bench-sync-token"
bench_init
T0=$(date +%s)

# start_node NAME DNSPORT HTTPPORT PEERURL SEED -> sets PID_<NAME>
start_node() {
  local name="$1" dport="$2" hport="$3" peer="$4" seed="$5" d="$WORK/$1"
  mkdir -p "$d"
  nice -n "$NICE" env RUST_LOG=warn \
    DNSMESH_AUTH__OPERATOR_TOKEN="$OP_TOKEN" \
    DNSMESH_CLUSTER__SYNC_TOKEN="$SYNC_TOKEN" \
    DNSMESH_CLUSTER__PEERS="$peer" \
    DNSMESH_HEARTBEAT__ENABLED=true \
    DNSMESH_HEARTBEAT__SELF_ENDPOINT="http://127.0.0.1:$hport" \
    DNSMESH_HEARTBEAT__ALLOW_PRIVATE_ENDPOINTS=true \
    DNSMESH_HEARTBEAT__INTERVAL_SECS="$HB_SECS" \
    DNSMESH_HEARTBEAT__SEEDS="$seed" \
    DNSMESH_HEARTBEAT__RESOLVERS="127.0.0.1:9" \
    "$NODE_BIN" --config "$ROOT/dnsmesh.toml" --zone "$ZONE" --data-dir "$d/data" \
      --dns-listen "127.0.0.1:$dport" --http-listen "127.0.0.1:$hport" >"$d/out" 2>"$d/err" &
  local pid=$!
  STARTED_PIDS+=("$pid")
  printf -v "PID_$name" '%s' "$pid"
  local deadline=$(( $(date +%s) + 60 ))
  until grep -q '^dnsmesh-node ready' "$d/out"; do
    kill -0 "$pid" 2>/dev/null || { cat "$d/err" >&2; die "node $name exited"; }
    [ "$(date +%s)" -lt "$deadline" ] || die "node $name not ready"
    sleep 0.05
  done
}

ADNS="$(free_port)"; AHTTP="$(free_port)"; BDNS="$(free_port)"; BHTTP="$(free_port)"
start_node A "$ADNS" "$AHTTP" "http://127.0.0.1:$BHTTP" "$ZONE@127.0.0.1:$BDNS"
start_node B "$BDNS" "$BHTTP" "http://127.0.0.1:$AHTTP" "$ZONE@127.0.0.1:$ADNS"
A_URL="http://127.0.0.1:$AHTTP"
log "A pid=$PID_A $A_URL, B pid=$PID_B; churn ${RATE}/s, TTL ${TTL}s, delete every ${DEL_EVERY}th, ${MINUTES} min -> $OUT"

SECS=$(( MINUTES * 60 ))
N=$(( RATE * SECS + RATE ))
"$LOADGEN" http "$A_URL" "$OP_TOKEN" --gen "$N" --prefix "soak$T0-" --zone "$ZONE" \
  --conns "$CONNS" --secs "$SECS" --ttl "$TTL" --rate "$RATE" --delete-every "$DEL_EVERY" \
  >"$WORK/loadgen.out" 2>&1 &
LG=$!
STARTED_PIDS+=("$LG")

metric() { # NAME -> value from A's /metrics
  curl -s -H "Authorization: Bearer $OP_TOKEN" "$A_URL/metrics" | awk -v m="$1" '$1 == m {print $2}'
}
echo "t_s,rss_kb,disk_bytes,fds,live_bytes,records,b_rss_kb,b_disk_bytes" >"$OUT"
start=$(date +%s)
while kill -0 "$LG" 2>/dev/null; do
  kill -0 "$PID_A" 2>/dev/null || die "node A is gone"
  now=$(( $(date +%s) - start ))
  line="$now,$(rss_kb "$PID_A"),$(du -sb "$WORK/A/data" | cut -f1),$(ls "/proc/$PID_A/fd" | wc -l)"
  line="$line,$(metric dmp_store_live_bytes),$(metric dmp_records),$(rss_kb "$PID_B"),$(du -sb "$WORK/B/data" | cut -f1)"
  echo "$line" >>"$OUT"
  log "$line"
  for _ in $(seq 1 "$SAMPLE"); do kill -0 "$LG" 2>/dev/null || break; sleep 1; done
done
wait "$LG" || true
L="$(cat "$WORK/loadgen.out")"
log "load: $L"

echo
echo "## Churn soak, $MINUTES min, $(date -u +%Y-%m-%d), $(nproc) CPUs"
echo "offered ${RATE}/s new 252-byte records, TTL ${TTL} s, every ${DEL_EVERY}th deleted; two nodes syncing, heartbeats every ${HB_SECS} s"
echo "load: acked $(kv acked "$L") in $(kv secs "$L") s = $(kv rate "$L")/s, deleted $(kv deleted "$L"), p50 $(kv p50_ms "$L") ms, p99 $(kv p99_ms "$L") ms, other $(kv other "$L"), io_errors $(kv io_errors "$L")"
analyse "$OUT"
echo "wall time: $(( $(date +%s) - T0 )) s; samples in $OUT"
