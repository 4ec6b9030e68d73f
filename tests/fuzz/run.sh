#!/usr/bin/env bash
# Run every fuzz target (or the ones named) for SECONDS each, one after another, and
# print the executions and crashes per target. Needs cargo-fuzz (see README.md); the
# stable toolchain is unlocked with RUSTC_BOOTSTRAP=1.
#
#   tests/fuzz/run.sh SECONDS [TARGET...]
#
# Corpus: tests/fuzz/corpus/<target> (grows, not committed) plus the committed seeds in
# tests/fuzz/seeds/<target>. Crashes land in tests/fuzz/artifacts/<target>/, logs in
# tests/fuzz/logs/<target>.log. Exit status 1 when any target crashed.
set -uo pipefail

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
  echo "usage: $0 SECONDS [TARGET...]" >&2
  exit 2
fi
secs=$1
shift
cd "$(dirname "$0")/../.."
fuzz_dir=tests/fuzz
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(dns_answer records message b64_txt registration http_json dns_slow)
fi

mkdir -p "$fuzz_dir/logs"
echo "building fuzz targets (log: $fuzz_dir/logs/build.log)..."
if ! cargo fuzz build --fuzz-dir "$fuzz_dir" >"$fuzz_dir/logs/build.log" 2>&1; then
  tail -30 "$fuzz_dir/logs/build.log" >&2
  echo "build failed" >&2
  exit 2
fi
failed=0
printf '%-14s %12s %10s %8s %8s  %s\n' target executions exec/s corpus crashes result
for t in "${targets[@]}"; do
  mkdir -p "$fuzz_dir/corpus/$t" "$fuzz_dir/artifacts/$t"
  log="$fuzz_dir/logs/$t.log"
  # One fuzzer at a time, one job: the machines are small.
  cargo fuzz run --fuzz-dir "$fuzz_dir" "$t" "$fuzz_dir/corpus/$t" "$fuzz_dir/seeds/$t" -- \
    -max_total_time="$secs" -max_len=4096 -len_control=0 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  written=$(grep -o 'Test unit written to .*' "$log" | sed 's/^Test unit written to //')
  new=$(echo -n "$written" | grep -c . || true)
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  corpus=$(find "$fuzz_dir/corpus/$t" -type f | wc -l)
  result=ok
  if [ "$rc" -ne 0 ] || [ "$new" -gt 0 ]; then
    result="FAILED (exit $rc, see $log)"
    failed=1
  fi
  printf '%-14s %12s %10s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$new" "$result"
  [ -n "$written" ] && echo "$written" | sed 's/^/    crash input: /'
done
exit $failed
