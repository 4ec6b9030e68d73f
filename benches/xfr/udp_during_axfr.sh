#!/usr/bin/env bash
# UDP answers per second / per node CPU-second / per UDP-thread CPU-second, without and
# during back-to-back AXFRs of a 100,000-record zone, in one run (issue 14's note).
# Loopback only; bounded: loads XFR_BIG_RECORDS records, then three XFR_BENCH_SECS windows.
#   benches/xfr/udp_during_axfr.sh            # release build (slow the first time)
#   PROFILE=dev benches/xfr/udp_during_axfr.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
flag="--release"
[ "${PROFILE:-release}" = dev ] && flag=""
export XFR_BIG_RECORDS="${XFR_BIG_RECORDS:-100000}" XFR_BENCH_SECS="${XFR_BENCH_SECS:-5}"
cargo test $flag --test xfr_secondaries -- --ignored --nocapture udp_during_axfr 2>&1 \
  | grep -E "^(loaded|without|during)"
