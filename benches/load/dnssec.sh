#!/usr/bin/env bash
# dnssec.sh — signed DNS reads: our node with [dnssec] enabled vs Knot DNS signing the same
# zone, in one run, plus the memory cost of the signatures.
#
#   benches/load/dnssec.sh [NRECORDS]        (default 10000)
#
# 1. Zone and queries from ../shared/bench/mkzone.py (90 % hits, 10 % NXDOMAIN).
# 2. knot-pre: knotd with automatic signing (dnssec-signing: on, ECDSA P-256 KSK+ZSK, NSEC):
#    the zone is signed once at load; negative answers carry precomputed NSECs.
#    knot-online: knotd with mod-onlinesign (ECDSA P-256; every answer signed on the fly,
#    NSEC white lies), Knot's online-signing design.
#    ours: dnsmesh-node, [dnssec] enabled (algorithm 13), records loaded over HTTP;
#    positive answers from precomputed RRSIGs, negatives with compact denial signed per
#    query. ours-plain: the same node unsigned, for the memory baseline.
# 3. Checks that a DO=1 hit carries an RRSIG from each signed server.
# 4. Drives each, one at a time (server on CPU 0, dnsperf -D on CPU 1, DO=1 on every query):
#    dnsperf -l PHASE -c 8 -q 500 -D -> answers/s and answers per server CPU-second.
# 5. RSS of ours signed vs unsigned (same records) = memory cost of the signatures.
#
# Environment: PHASE (seconds per phase, default 5), KEEP=1 keeps the work dir.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N="${1:-10000}"
PHASE="${PHASE:-5}"
need knotd
bench_init
T0=$(date +%s)

log "zone: $N records (mkzone.py)"
python3 "$SHARED/bench/mkzone.py" "$WORK/z" "$ZONE" "$N" 200000
Q="$WORK/z/queries.txt"

# start_knot_signed NAME MODE (pre|online) -> sets KS_PID KS_PORT
start_knot_signed() {
  local name="$1" mode="$2" d="$WORK/$1"
  mkdir -p "$d/run" "$d/db" "$d/zone"
  cp "$WORK/z/zone.db" "$d/zone/zone.db"
  KS_PORT="$(free_port)"
  local sign mod policy=""
  if [ "$mode" = pre ]; then
    sign="dnssec-signing: on
    dnssec-policy: p256"
    mod=""
    policy="policy:
  - id: p256
    algorithm: ecdsap256sha256
    nsec3: off"
  else
    sign="dnssec-signing: off"
    mod="    module: mod-onlinesign/p256"
    policy="policy:
  - id: p256
    algorithm: ecdsap256sha256
mod-onlinesign:
  - id: p256
    policy: p256"
  fi
  cat > "$d/knot.conf" <<EOF
server:
    rundir: "$d/run"
    listen: 127.0.0.1@$KS_PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$d/db"
log:
  - target: stderr
    any: warning
$policy
template:
  - id: default
    storage: "$d/zone"
    journal-content: none
    zonefile-sync: -1
    zonefile-load: whole
    semantic-checks: off
    $sign
$mod
zone:
  - domain: $ZONE
    file: "zone.db"
EOF
  knotd -c "$d/knot.conf" >"$d/knot.log" 2>&1 &
  KS_PID=$!
  STARTED_PIDS+=("$KS_PID")
  wait_dns "$KS_PORT" "${KNOT_WAIT:-900}" || { cat "$d/knot.log" >&2; die "knotd ($name) did not answer"; }
  # Automatic signing happens after load: wait for the RRSIG on a hit.
  local hit deadline=$(( $(date +%s) + ${KNOT_WAIT:-900} ))
  hit="$(head -n1 "$WORK/z/records.tsv" | cut -f1)"
  until dig @127.0.0.1 -p "$KS_PORT" +norec +dnssec +time=2 +tries=1 "$hit" TXT | grep -q 'RRSIG'; do
    [ "$(date +%s)" -lt "$deadline" ] || { cat "$d/knot.log" >&2; die "knotd ($name) never signed"; }
    sleep 0.2
  done
}

declare -A R
bench() { # LABEL PID PORT
  local label="$1" pid="$2" port="$3" c0 c1 s
  pin0 "$pid"
  sleep 0.5
  c0="$(cpu_ticks "$pid")"
  on1 dnsperf -s 127.0.0.1 -p "$port" -d "$Q" -l "$PHASE" -c 8 -q 500 -t 2 -D > "$WORK/$label.load" 2>&1 || true
  c1="$(cpu_ticks "$pid")"
  s="$(python3 "$LOAD_DIR/dnsperf_stats.py" "$WORK/$label.load")"
  R[$label.qps]="$(kv qps "$s")"
  R[$label.cpu]="$(python3 -c "print(round(($c1-$c0)/$CLK_TCK, 2))")"
  R[$label.apc]="$(python3 -c "c=$c1-$c0; print(round($(kv completed "$s")/(c/$CLK_TCK)) if c else 0)")"
  R[$label.rss]="$(( $(rss_kb "$pid") / 1024 ))"
  log "$label: $s cpu=${R[$label.cpu]}s rss=${R[$label.rss]}MiB"
}

HIT="$(head -n1 "$WORK/z/records.tsv" | cut -f1)"
check_signed() { # LABEL PORT
  dig @127.0.0.1 -p "$2" +norec +dnssec +time=2 +tries=1 "$HIT" TXT | grep -q "RRSIG" ||
    die "$1 does not sign $HIT"
  local miss="slot-0.mb-000000000000.$ZONE"
  dig @127.0.0.1 -p "$2" +norec +dnssec +time=2 +tries=1 "$miss" TXT | grep -q "NSEC" ||
    die "$1 gives no NSEC for $miss"
}

log "knot, automatic (pre-)signing"
start_knot_signed knot-pre pre
check_signed knot-pre "$KS_PORT"
bench knot-pre "$KS_PID" "$KS_PORT"
stop_pid "$KS_PID"

log "knot, mod-onlinesign"
if start_knot_signed knot-online online 2>/dev/null; then
  check_signed knot-online "$KS_PORT"
  bench knot-online "$KS_PID" "$KS_PORT"
  stop_pid "$KS_PID"
else
  log "knot-online: skipped (mod-onlinesign unavailable)"
fi

log "ours, signed"
start_ours "$WORK/ours" DNSMESH_DNSSEC__ENABLED=true
L_OURS="$("$LOADGEN" http "$OURS_HTTP" "$OP_TOKEN" --records "$WORK/z/records.tsv" --conns 64 --secs 600)"
log "ours (signed) load: $L_OURS"
[ "$(kv acked "$L_OURS")" = "$N" ] || die "not every record was acknowledged: $L_OURS"
check_signed ours "$OURS_DNS_PORT"
SIGNED_PID="$OURS_PID"; SIGNED_PORT="$OURS_DNS_PORT"; SIGNED_RSS0="$(( $(rss_kb "$OURS_PID") / 1024 ))"
bench ours "$SIGNED_PID" "$SIGNED_PORT"
stop_pid "$SIGNED_PID"
log "ours, signed: restart (re-signs every name while loading the view)"
OURS_WAIT_S=1200 start_ours "$WORK/ours" DNSMESH_DNSSEC__ENABLED=true
SIGNED_READY="$OURS_READY_S"; SIGNED_RSS1="$(( $(rss_kb "$OURS_PID") / 1024 ))"
stop_pid "$OURS_PID"

log "ours, unsigned (memory baseline)"
start_ours "$WORK/plain"
L_PLAIN="$("$LOADGEN" http "$OURS_HTTP" "$OP_TOKEN" --records "$WORK/z/records.tsv" --conns 64 --secs 600)"
PLAIN_RSS0="$(( $(rss_kb "$OURS_PID") / 1024 ))"
stop_pid "$OURS_PID"
start_ours "$WORK/plain"
PLAIN_READY="$OURS_READY_S"; PLAIN_RSS1="$(( $(rss_kb "$OURS_PID") / 1024 ))"
stop_pid "$OURS_PID"

echo
echo "## Signed DNS reads (DO=1 on every query), $N records, $(date -u +%Y-%m-%d), $(nproc) CPUs"
echo "dnsperf -l $PHASE -c 8 -q 500 -D; 90 % hits, 10 % NXDOMAIN (random names)"
printf '%-12s | %9s | %13s | %7s | %7s\n' server "answers/s" "answers/CPU-s" "CPU s" "RSS MiB"
for s in knot-pre knot-online ours; do
  [ -n "${R[$s.qps]:-}" ] || continue
  printf '%-12s | %9.0f | %13s | %7s | %7s\n' "$s" "${R[$s.qps]}" "${R[$s.apc]}" "${R[$s.cpu]}" "${R[$s.rss]}"
done
echo
echo "ours/knot-pre: answers/CPU-s $(ratio "${R[ours.apc]}" "${R[knot-pre.apc]}")x"
[ -n "${R[knot-online.apc]:-}" ] && echo "ours/knot-online: answers/CPU-s $(ratio "${R[ours.apc]}" "${R[knot-online.apc]}")x"
echo "memory, $N records: RSS after load signed ${SIGNED_RSS0} MiB vs unsigned ${PLAIN_RSS0} MiB; after restart signed ${SIGNED_RSS1} MiB vs unsigned ${PLAIN_RSS1} MiB"
echo "restart to ready: signed ${SIGNED_READY} s, unsigned ${PLAIN_READY} s"
echo "HTTP load: signed $(kv rate "$L_OURS")/s, unsigned $(kv rate "$L_PLAIN")/s"
echo "wall time: $(( $(date +%s) - T0 )) s"
