#!/usr/bin/env bash
# run.sh — DNS read benchmark: our node vs Knot DNS vs the reference node, in one run.
#
#   benches/load/run.sh [NRECORDS]        (default 10000)
#
# 1. Makes a zone with ../shared/bench/mkzone.py (NRECORDS DMP-shaped TXT records of 252
#    bytes, 200k queries: 90 % hits, 10 % NXDOMAIN).
# 2. Starts Knot (1 UDP worker, 1 TCP worker, no journal, zone file from mkzone), our node
#    (release build) and the reference node (../shared/interop/ref-node.sh), each on its own
#    loopback port.
# 3. Loads the same records into our node and the reference through their HTTP write APIs
#    (POST /v1/records/<name> with each node's operator token; loadgen, 64 connections, 4
#    for the reference, which closes every connection and has a small listen backlog).
# 4. Checks that the three answer a sample hit and a sample miss identically (status, AA,
#    answer section).
# 5. Drives each, one at a time, server pinned to CPU 0 and dnsperf to CPU 1
#    (../shared/spec/hotpath.md §2):
#      load:  dnsperf -l PHASE -c 8 -q 500            -> answers/s, answers per server CPU-s
#      fixed: dnsperf -l PHASE -c 8 -q 500 -Q RATE -v -> p50/p99 latency, CPU-s at that rate
#      fixed under SCHED_FIFO (RT=1)                  -> p50/p99 latency without other tenants
#    and reads VmRSS. Server CPU = utime+stime from /proc/PID/stat before/after.
# 6. Prints the table and the ratios ours/Knot and ours/reference.
#
# Environment: PHASE (seconds per dnsperf phase, default 5), RATE (default 20000),
# REF_Q (outstanding queries against the reference in both phases, default 50: it serves
# at most 128 queries at once and drops the rest, which only adds timeouts),
# RT (default 1: repeat the fixed-rate phase with server and dnsperf under SCHED_FIFO, so
# the latency tail shows the server rather than the other tenants of a shared machine;
# 0 skips it), KEEP=1 keeps the work dir. Everything stays on 127.0.0.1; every process started here is
# stopped by PID on exit.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N="${1:-10000}"
PHASE="${PHASE:-5}"
RATE="${RATE:-20000}"
REF_Q="${REF_Q:-50}"
RT="${RT:-1}"
need knotd
bench_init
T0=$(date +%s)

log "zone: $N records (mkzone.py)"
python3 "$SHARED/bench/mkzone.py" "$WORK/z" "$ZONE" "$N" 200000
Q="$WORK/z/queries.txt"

log "starting knotd, our node, the reference node"
start_knot "$WORK/z"
# One UDP thread, as Knot runs one UDP worker: the server is pinned to one CPU
# (threads.sh measures udp_threads = 2).
start_ours "$WORK/ours" DNSMESH_DNS__UDP_THREADS=1
start_ref "$WORK/ref"
log "knot pid=$KNOT_PID dns=$KNOT_PORT | ours pid=$OURS_PID dns=$OURS_DNS_PORT $OURS_HTTP | ref pid=$REF_PID dns=$REF_DNS_PORT $REF_HTTP"

log "loading $N records into our node and the reference over HTTP"
L_OURS="$("$LOADGEN" http "$OURS_HTTP" "$OP_TOKEN" --records "$WORK/z/records.tsv" --conns 64 --secs 120)"
L_REF="$("$LOADGEN" http "$REF_HTTP" "$REF_TOKEN" --records "$WORK/z/records.tsv" --conns 4 --secs 120)"
log "ours: $L_OURS"
log "ref:  $L_REF"
for l in "$L_OURS" "$L_REF"; do
  [ "$(kv acked "$l")" = "$N" ] || die "not every record was acknowledged: $l"
done

log "sample queries"
HIT="$(head -n1 "$WORK/z/records.tsv" | cut -f1)"
MISS="slot-0.mb-000000000000.$ZONE"
sig() { # PORT NAME -> status, aa flag, answer section (one line)
  dig @127.0.0.1 -p "$1" +norec +noedns +time=2 +tries=1 "$2" TXT |
    awk '/status:/{s=$6} /^;; flags:/{aa=($0 ~ / aa[ ;]/)?"aa":"noaa"}
         /^;; ANSWER SECTION:/{a=1;next} /^$/{a=0} a{ans=ans $0 "|"}
         END{print s, aa, ans}'
}
for pair in "hit $HIT" "miss $MISS"; do
  set -- $pair
  k="$(sig "$KNOT_PORT" "$2")"; o="$(sig "$OURS_DNS_PORT" "$2")"; r="$(sig "$REF_DNS_PORT" "$2")"
  echo "  $1 knot: ${k:0:90}"; echo "  $1 ours: ${o:0:90}"; echo "  $1 ref:  ${r:0:90}"
  [ "$k" = "$o" ] && [ "$o" = "$r" ] || die "the three servers answer $2 differently"
done
log "sample hit and miss answered identically by all three (status, AA, answer section)"

declare -A R
bench() { # LABEL PID PORT OUTSTANDING
  local label="$1" pid="$2" port="$3" q="$4" c0 c1 s
  pin0 "$pid"
  sleep 0.5
  c0="$(cpu_ticks "$pid")"
  on1 dnsperf -s 127.0.0.1 -p "$port" -d "$Q" -l "$PHASE" -c 8 -q "$q" -t 2 > "$WORK/$label.load" 2>&1 || true
  c1="$(cpu_ticks "$pid")"
  s="$(python3 "$LOAD_DIR/dnsperf_stats.py" "$WORK/$label.load")"
  R[$label.load]="$s"
  R[$label.cpu]="$(python3 -c "print(($c1-$c0)/$CLK_TCK)")"
  R[$label.ans]="$(kv completed "$s")"
  R[$label.qps]="$(kv qps "$s")"
  R[$label.apc]="$(python3 -c "c=$c1-$c0; print(round($(kv completed "$s")/(c/$CLK_TCK)) if c else 0)")"
  sleep 0.5
  c0="$(cpu_ticks "$pid")"
  on1 dnsperf -s 127.0.0.1 -p "$port" -d "$Q" -l "$PHASE" -c 8 -q "$q" -t 2 -Q "$RATE" -v > "$WORK/$label.fixed" 2>&1 || true
  c1="$(cpu_ticks "$pid")"
  s="$(python3 "$LOAD_DIR/dnsperf_stats.py" "$WORK/$label.fixed")"
  R[$label.fixed]="$s"
  R[$label.fqps]="$(kv qps "$s")"
  R[$label.flost]="$(kv lost "$s")"
  R[$label.p50]="$(kv p50_ms "$s")"
  R[$label.p99]="$(kv p99_ms "$s")"
  R[$label.fapc]="$(python3 -c "c=$c1-$c0; print(round($(kv completed "$s")/(c/$CLK_TCK)) if c else 0)")"
  if [ "$RT" = 1 ]; then
    # The same fixed rate with server and dnsperf under SCHED_FIFO: on this shared machine
    # the tail above is mostly other tenants' time slices; this one is the server's own.
    sleep 0.5
    chrt -f -a -p 50 "$pid"
    chrt -f 50 taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$Q" -l "$PHASE" -c 8 -q "$q" -t 2 -Q "$RATE" -v > "$WORK/$label.rt" 2>&1 || true
    chrt -o -a -p 0 "$pid"
    s="$(python3 "$LOAD_DIR/dnsperf_stats.py" "$WORK/$label.rt")"
    R[$label.rt]="$s"
    R[$label.rtqps]="$(kv qps "$s")"
    R[$label.rt50]="$(kv p50_ms "$s")"
    R[$label.rt99]="$(kv p99_ms "$s")"
    log "$label: fixed/FIFO $s"
  fi
  R[$label.rss]="$(( $(rss_kb "$pid") / 1024 ))"
  log "$label: load ${R[$label.load]}"
  log "$label: fixed ${R[$label.fixed]}"
}
bench knot "$KNOT_PID" "$KNOT_PORT" 500
bench ours "$OURS_PID" "$OURS_DNS_PORT" 500
bench ref "$REF_PID" "$REF_DNS_PORT" "$REF_Q"

echo
echo "## DNS reads, $N records, $(date -u +%Y-%m-%d), $(nproc) CPUs, server on CPU 0, dnsperf on CPU 1"
echo "load: dnsperf -l $PHASE -c 8 -q 500 (reference: -q $REF_Q); fixed: the same + -Q $RATE -v"
printf '%-5s | %9s | %13s | %10s | %9s | %7s | %7s | %13s | %7s | %7s | %7s\n' \
  server "answers/s" "answers/CPU-s" "@RATE done" "@RATE lost" "p50 ms" "p99 ms" "@RATE a/CPU-s" "FIFO p50" "FIFO p99" "RSS MiB"
for s in knot ours ref; do
  printf '%-5s | %9.0f | %13s | %10.0f | %9s | %7s | %7s | %13s | %7s | %7s | %7s\n' "$s" \
    "${R[$s.qps]}" "${R[$s.apc]}" "${R[$s.fqps]}" "${R[$s.flost]}" "${R[$s.p50]}" "${R[$s.p99]}" "${R[$s.fapc]}" \
    "${R[$s.rt50]:--}" "${R[$s.rt99]:--}" "${R[$s.rss]}"
done
echo
echo "ours/knot: answers/s $(ratio "${R[ours.qps]}" "${R[knot.qps]}")x, answers/CPU-s $(ratio "${R[ours.apc]}" "${R[knot.apc]}")x, at $RATE q/s answers/CPU-s $(ratio "${R[ours.fapc]}" "${R[knot.fapc]}")x"
echo "ours/ref:  answers/s $(ratio "${R[ours.qps]}" "${R[ref.qps]}")x, answers/CPU-s $(ratio "${R[ours.apc]}" "${R[ref.apc]}")x"
echo "HTTP load of $N records: ours $(kv rate "$L_OURS")/s (p99 $(kv p99_ms "$L_OURS") ms), ref $(kv rate "$L_REF")/s (p99 $(kv p99_ms "$L_REF") ms)"
echo "wall time: $(( $(date +%s) - T0 )) s"
