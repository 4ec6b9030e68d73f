#!/usr/bin/env bash
# threads.sh — does every core answer? Answers per server CPU-second with `[dns]
# udp_threads` = 1 against 2, in one run (issue 18; target: 2 threads >= 0.95x of 1).
#
#   benches/load/threads.sh [NRECORDS]        (default 10000)
#
# 1. Makes a zone with ../shared/bench/mkzone.py (as run.sh) and starts two of our nodes
#    (release build), one with udp_threads = 1 and one with 2 (SO_REUSEPORT sockets), loads
#    the same records into both over HTTP.
# 2. Drives each in turn, ROUNDS times alternating, with dnsperf -c 16 -q 500 (16 source
#    ports, spread by the kernel over the sockets) for PHASE seconds, in two placements:
#      spread: server and dnsperf both free on every CPU (the threads can run at once, so
#              any lock or cache line they share shows up as CPU per answer);
#      pinned: server on CPU 0, dnsperf on CPU 1 (run.sh's placement: the threads take
#              turns on one core, so this shows the cost of the second thread itself).
#    Server CPU = utime+stime from /proc/PID/stat around each phase; each thread's share of
#    the datagrams from `dmp_dns_udp_thread_queries_total` in /metrics.
# 3. Prints answers/s and answers per server CPU-second per placement and the ratio
#    2 threads / 1 thread.
#
# Environment: PHASE (default 5), ROUNDS (default 2), KEEP=1. Only 127.0.0.1; every process
# started here is stopped by PID on exit.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N="${1:-10000}"
PHASE="${PHASE:-5}"
ROUNDS="${ROUNDS:-2}"
bench_init
T0=$(date +%s)

log "zone: $N records (mkzone.py)"
python3 "$SHARED/bench/mkzone.py" "$WORK/z" "$ZONE" "$N" 200000
Q="$WORK/z/queries.txt"

declare -A PID PORT HTTP
for t in 1 2; do
  start_ours "$WORK/ours$t" DNSMESH_DNS__UDP_THREADS="$t"
  PID[$t]="$OURS_PID"; PORT[$t]="$OURS_DNS_PORT"; HTTP[$t]="$OURS_HTTP"
  L="$("$LOADGEN" http "$OURS_HTTP" "$OP_TOKEN" --records "$WORK/z/records.tsv" --conns 64 --secs 120)"
  [ "$(kv acked "$L")" = "$N" ] || die "not every record was acknowledged: $L"
  log "udp_threads=$t: pid=$OURS_PID dns=$OURS_DNS_PORT, loaded: $L"
done
threads_metric() { # HTTP -> "q0 q1 ..." (datagrams per UDP thread)
  curl -s -H "Authorization: Bearer $OP_TOKEN" "$1/metrics" |
    sed -n 's/^dmp_dns_udp_thread_queries_total{thread="[0-9]*"} //p' | tr '\n' ' '
}
for t in 1 2; do
  n="$(curl -s -H "Authorization: Bearer $OP_TOKEN" "${HTTP[$t]}/metrics" | sed -n 's/^dmp_dns_udp_threads //p')"
  [ "$n" = "$t" ] || die "udp_threads=$t node reports $n UDP threads"
done

udp_ticks() { # PID -> utime+stime of its dns-udp threads
  local t sum=0
  for t in /proc/"$1"/task/*; do
    [ "$(cat "$t/comm" 2>/dev/null)" = dns-udp ] || continue
    sum=$(( sum + $(sed 's/^.*) //' "$t/stat" | awk '{print $12 + $13}') ))
  done
  echo "$sum"
}
declare -A ANS CPU UCPU
phase() { # PLACEMENT T ROUND
  local place="$1" t="$2" pid="${PID[$2]}" port="${PORT[$2]}" c0 c1 u0 u1 s m0 m1 run
  if [ "$place" = pinned ]; then
    pin0 "$pid"; run=(on1)
  else
    taskset -a -p 0x3 "$pid" >/dev/null
    local th; for th in /proc/"$pid"/task/*; do renice -n "$NICE" -p "${th##*/}" >/dev/null 2>&1 || true; done
    run=(nice -n "$NICE")
  fi
  sleep 0.5
  m0="$(threads_metric "${HTTP[$t]}")"
  c0="$(cpu_ticks "$pid")"; u0="$(udp_ticks "$pid")"
  "${run[@]}" dnsperf -s 127.0.0.1 -p "$port" -d "$Q" -l "$PHASE" -c 16 -q 500 -t 2 \
    > "$WORK/$place.$t.$3" 2>&1 || true
  c1="$(cpu_ticks "$pid")"; u1="$(udp_ticks "$pid")"
  m1="$(threads_metric "${HTTP[$t]}")"
  s="$(python3 "$LOAD_DIR/dnsperf_stats.py" "$WORK/$place.$t.$3")"
  ANS[$place.$t]=$(( ${ANS[$place.$t]:-0} + $(kv completed "$s") ))
  CPU[$place.$t]=$(( ${CPU[$place.$t]:-0} + c1 - c0 ))
  UCPU[$place.$t]=$(( ${UCPU[$place.$t]:-0} + u1 - u0 ))
  local share
  share="$(python3 -c "a='$m0'.split(); b='$m1'.split(); print('/'.join(str(int(y)-int(x)) for x, y in zip(a, b)))")"
  log "$place udp_threads=$t round $3: $s cpu_s=$(python3 -c "print(($c1-$c0)/$CLK_TCK)") udp_threads_cpu_s=$(python3 -c "print(($u1-$u0)/$CLK_TCK)") per-thread datagrams $share"
}
for place in spread pinned; do
  for r in $(seq 1 "$ROUNDS"); do
    phase "$place" 1 "$r"
    phase "$place" 2 "$r"
  done
done

echo
echo "## UDP threads, $N records, $(date -u +%Y-%m-%d), $(nproc) CPUs, dnsperf -c 16 -q 500, $ROUNDS x $PHASE s per cell, load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s | %11s | %9s | %13s | %21s\n' placement udp_threads "answers/s" "answers/CPU-s" "answers/UDP-thread-CPU-s"
declare -A APC UAPC
for place in spread pinned; do
  for t in 1 2; do
    APC[$place.$t]="$(python3 -c "c=${CPU[$place.$t]}/$CLK_TCK; print(round(${ANS[$place.$t]}/c) if c else 0)")"
    UAPC[$place.$t]="$(python3 -c "c=${UCPU[$place.$t]}/$CLK_TCK; print(round(${ANS[$place.$t]}/c) if c else 0)")"
    printf '%-9s | %11s | %9.0f | %13s | %21s\n' "$place" "$t" \
      "$(python3 -c "print(${ANS[$place.$t]}/($ROUNDS*$PHASE))")" "${APC[$place.$t]}" "${UAPC[$place.$t]}"
  done
done
echo
for place in spread pinned; do
  echo "$place: answers/CPU-s 2 threads / 1 thread = $(ratio "${APC[$place.2]}" "${APC[$place.1]}")x (target >= 0.95), per UDP-thread CPU-s $(ratio "${UAPC[$place.2]}" "${UAPC[$place.1]}")x, answers/s $(ratio "${ANS[$place.2]}" "${ANS[$place.1]}")x"
done
echo "wall time: $(( $(date +%s) - T0 )) s"
