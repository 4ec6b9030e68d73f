#!/usr/bin/env bash
# all.sh — run the load benchmarks in a row (reads, writes, UDP threads, memory/start-up), printing
# the machine's load average before each (this is a shared 2-CPU machine: read the figures
# with it in mind). Progress lines go to stderr; the tables to stdout. Its output is what
# the README's "Performance" section quotes.
#
#   benches/load/all.sh [NRECORDS_READ [NRECORDS_MEMORY]]      (defaults 10000, 1000000)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
echo "# dnsmesh load benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$HERE" rev-parse --short HEAD)"
echo "# $(nproc) CPUs, kernel $(uname -r), $(dnsperf -h 2>&1 | sed -n 's/^Version /dnsperf /p'), $(knotd --version 2>&1 | head -n1)"
section() { echo; echo "# benches/load/$*   (load average before: $(cut -d' ' -f1-3 /proc/loadavg))"; }
section "run.sh ${1:-10000}";    bash "$HERE/run.sh" "${1:-10000}"
section "write.sh";              bash "$HERE/write.sh"
section "threads.sh ${1:-10000}"; bash "$HERE/threads.sh" "${1:-10000}"
section "memory.sh ${2:-1000000}"; bash "$HERE/memory.sh" "${2:-1000000}"
