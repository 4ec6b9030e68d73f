#!/usr/bin/env bash
# write.sh — acknowledged durable writes per second: our node vs the reference node.
#
#   benches/load/write.sh
#
# Starts our node (release build) and the reference (../shared/interop/ref-node.sh) on
# loopback; each in turn is pinned to CPU 0 with its load generator on CPU 1.
#   HTTP:   loadgen http — POST /v1/records/<name> {"value","ttl"} with the operator token
#           from CONNS concurrent keep-alive connections (the reference speaks HTTP/1.0 and
#           closes after each answer: loadgen reconnects), PHASE seconds, every write a new
#           252-byte record. Counts 201s only.
#   UPDATE: a TSIG key registered through each node's own /v1/registration/tsig-confirm
#           (loadgen register), then dnsperf -u -y hmac-sha256:KEY with one add per UPDATE
#           (new slot-N.mb-H names, in the key's default scope), over UDP and over TCP,
#           PHASE seconds each, as halves in the order udp tcp tcp udp (the store grows
#           during the run and a bigger store is slower: the mirrored order gives both
#           modes the same sizes on average), UPD_Q outstanding. Counts NOERROR answers only.
# "Durable" is each node's own acknowledgement rule: ours answers after the sled flush
# that covers the write; the reference after its SQLite commit (WAL, synchronous=NORMAL).
# Server CPU = utime+stime from /proc/PID/stat around each phase.
#
# Environment: PHASE (default 8), CONNS (default 128), REF_CONNS (default 4: the
# reference's best — it closes every connection and its listen backlog is small, so at 32
# or 64 connections SYN retries cut its rate to 671 and 287 writes/s, against 2042 at 4),
# UPD_Q (default 128), BASE_BIN (another dnsmesh-node binary, e.g. main's, measured in the
# same run as row "base", with this dnsmesh.toml minus the keys it does not know), KEEP=1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PHASE="${PHASE:-8}"
CONNS="${CONNS:-128}"
REF_CONNS="${REF_CONNS:-4}"
UPD_Q="${UPD_Q:-128}"
bench_init
T0=$(date +%s)

# Per-key write buckets (token_rate/token_burst for bearer tokens, update_key_rate/
# update_key_burst for TSIG keys; both apply on loopback) are opened wide: this measures
# the write path, not the abuse limiter.
start_ours "$WORK/ours" DNSMESH_LIMITS__TOKEN_RATE=1000000 DNSMESH_LIMITS__TOKEN_BURST=1000000 \
    DNSMESH_LIMITS__UPDATE_KEY_RATE=1000000 DNSMESH_LIMITS__UPDATE_KEY_BURST=1000000
start_ref "$WORK/ref"
log "ours pid=$OURS_PID dns=$OURS_DNS_PORT $OURS_HTTP | ref pid=$REF_PID dns=$REF_DNS_PORT $REF_HTTP"

declare -A R
phase_cpu() { # PID CMD... -> runs CMD on CPU 1, prints its stdout; sets CPU_S
  local pid="$1" c0 c1; shift
  c0="$(cpu_ticks "$pid")"
  on1 "$@"
  c1="$(cpu_ticks "$pid")"
  CPU_S="$(python3 -c "print(($c1-$c0)/$CLK_TCK)")"
}
noerror() { sed -n 's/.*rcodes=[^ ]*NOERROR\([0-9]*\).*/\1/p' <<<"$1" | grep . || echo 0; }

bench() { # LABEL PID HTTP_URL DNS_PORT TOKEN CONNS
  local label="$1" pid="$2" url="$3" port="$4" token="$5" conns="$6" out key s n
  pin0 "$pid"
  sleep 0.5
  phase_cpu "$pid" "$LOADGEN" http "$url" "$token" --gen 100000000 --prefix "h$label" \
    --zone "$ZONE" --conns "$conns" --secs "$PHASE" > "$WORK/$label.http"
  out="$(cat "$WORK/$label.http")"
  R[$label.http]="$(kv rate "$out")"
  R[$label.http_p50]="$(kv p50_ms "$out")"
  R[$label.http_p99]="$(kv p99_ms "$out")"
  R[$label.http_cpu]="$(python3 -c "print(round($(kv acked "$out")/$CPU_S) if $CPU_S else 0)")"
  log "$label http: $out cpu_s=$CPU_S"

  key="$(on1 "$LOADGEN" register "$url" "bench$RANDOM" "$ZONE")"
  # UDP and TCP in the order udp tcp tcp udp, PHASE/2 seconds each: a node slows down as
  # its store grows (more of sled's pages miss its cache), so whichever mode ran second
  # on a store the first had grown came out slower; the mirrored order gives both modes
  # the same store sizes on average.
  local half k=0 t
  half="$(python3 -c "print($PHASE / 2)")"
  declare -A N T C L
  for mode in udp tcp; do N[$mode]=0; T[$mode]=0; C[$mode]=0; L[$mode]=0; done
  for mode in udp tcp tcp udp; do
    k=$((k + 1))
    "$LOADGEN" gen-update 400000 "u$label$mode$k" "$ZONE" > "$WORK/upd.txt"
    sleep 0.5
    phase_cpu "$pid" dnsperf -u -m "$mode" -y "$key" -s 127.0.0.1 -p "$port" -d "$WORK/upd.txt" \
      -n 1 -l "$half" -c 8 -q "$UPD_Q" -t 5 > "$WORK/$label.$mode.$k" 2>&1 || true
    s="$(python3 "$LOAD_DIR/dnsperf_stats.py" "$WORK/$label.$mode.$k")"
    n="$(noerror "$s")"
    t="$(sed -n 's/.*Run time (s):[[:space:]]*\([0-9.]*\).*/\1/p' "$WORK/$label.$mode.$k" | grep . || echo 0)"
    N[$mode]=$((N[$mode] + n))
    T[$mode]="$(python3 -c "print(${T[$mode]} + $t)")"
    C[$mode]="$(python3 -c "print(${C[$mode]} + $CPU_S)")"
    L[$mode]="$(python3 -c "print(${L[$mode]} + $n * $(kv avg_ms "$s"))")"
    log "$label update/$mode ($k/4): $s cpu_s=$CPU_S"
  done
  for mode in udp tcp; do
    R[$label.$mode]="$(python3 -c "print(round(${N[$mode]} / ${T[$mode]}) if ${T[$mode]} else 0)")"
    R[$label.${mode}_avg]="$(python3 -c "print(f'{${L[$mode]} / ${N[$mode]}:.3f}' if ${N[$mode]} else 0)")"
    R[$label.${mode}_cpu]="$(python3 -c "print(round(${N[$mode]} / ${C[$mode]}) if ${C[$mode]} else 0)")"
  done
  R[$label.records]="$(curl -s "$url/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["records"])')"
}
bench ours "$OURS_PID" "$OURS_HTTP" "$OURS_DNS_PORT" "$OP_TOKEN" "$CONNS"
ROWS="ours"
if [ -n "${BASE_BIN:-}" ]; then
  stop_pid "$OURS_PID"
  # Keys added since (issue 18) are left out for the older binary.
  grep -v '^udp_threads' "$ROOT/dnsmesh.toml" > "$WORK/base.toml"
  SAVED_BIN="$NODE_BIN"; NODE_BIN="$BASE_BIN"
  NODE_CONFIG="$WORK/base.toml" start_ours "$WORK/base" DNSMESH_LIMITS__TOKEN_RATE=1000000 \
    DNSMESH_LIMITS__TOKEN_BURST=1000000 DNSMESH_LIMITS__UPDATE_KEY_RATE=1000000 \
    DNSMESH_LIMITS__UPDATE_KEY_BURST=1000000
  NODE_BIN="$SAVED_BIN"
  log "base ($BASE_BIN) pid=$OURS_PID dns=$OURS_DNS_PORT $OURS_HTTP"
  bench base "$OURS_PID" "$OURS_HTTP" "$OURS_DNS_PORT" "$OP_TOKEN" "$CONNS"
  ROWS="ours base"
fi
bench ref "$REF_PID" "$REF_HTTP" "$REF_DNS_PORT" "$REF_TOKEN" "$REF_CONNS"

echo
echo "## Acknowledged durable writes, $(date -u +%Y-%m-%d), $(nproc) CPUs, server on CPU 0, client on CPU 1, $PHASE s per phase"
echo "HTTP: loadgen, $CONNS connections (reference: $REF_CONNS); UPDATE: dnsperf -u, -q $UPD_Q, one TSIG-signed add per message"
printf '%-5s | %9s | %8s | %8s | %11s | %11s | %9s | %11s | %9s | %s\n' \
  server "HTTP w/s" "p50 ms" "p99 ms" "HTTP w/CPU-s" "UPD/UDP w/s" "avg ms" "UPD/TCP w/s" "avg ms" "records after"
for s in $ROWS ref; do
  printf '%-5s | %9s | %8s | %8s | %11s | %11s | %9s | %11s | %9s | %s\n' "$s" \
    "${R[$s.http]}" "${R[$s.http_p50]}" "${R[$s.http_p99]}" "${R[$s.http_cpu]}" \
    "${R[$s.udp]}" "${R[$s.udp_avg]}" "${R[$s.tcp]}" "${R[$s.tcp_avg]}" "${R[$s.records]}"
done
echo
echo "ours/ref: HTTP writes/s $(ratio "${R[ours.http]}" "${R[ref.http]}")x, per CPU-s $(ratio "${R[ours.http_cpu]}" "${R[ref.http_cpu]}")x; UPDATE/UDP $(ratio "${R[ours.udp]}" "${R[ref.udp]}")x; UPDATE/TCP $(ratio "${R[ours.tcp]}" "${R[ref.tcp]}")x"
[ -n "${BASE_BIN:-}" ] && echo "ours/base: HTTP writes/s $(ratio "${R[ours.http]}" "${R[base.http]}")x, per CPU-s $(ratio "${R[ours.http_cpu]}" "${R[base.http_cpu]}")x; UPDATE/UDP $(ratio "${R[ours.udp]}" "${R[base.udp]}")x; UPDATE/TCP $(ratio "${R[ours.tcp]}" "${R[base.tcp]}")x"
echo "ours: UPDATE/TCP / UPDATE/UDP $(ratio "${R[ours.tcp]}" "${R[ours.udp]}")x (target >= 1; per CPU-s: UDP ${R[ours.udp_cpu]}, TCP ${R[ours.tcp_cpu]} writes); HTTP writes/s ${R[ours.http]} (target >= 20000), $(ratio "${R[ours.http]}" "${R[ref.http]}")x the reference (target >= 10)"
echo "wall time: $(( $(date +%s) - T0 )) s"
