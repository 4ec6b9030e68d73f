#!/usr/bin/env bash
# soak_compare.sh — short churn runs of soak.sh, one per variant, to compare store options
# before a full soak.
#
#   benches/load/soak_compare.sh [MINUTES] VARIANT...      (default 4 minutes each)
#
# A VARIANT is a label and environment assignments for the nodes, e.g.
#   default
#   "compact DNSMESH_NODE__COMPACT_RATIO=3"
# Each runs `soak.sh MINUTES` (SAMPLE 15 s unless set) with those variables exported, its
# samples in $OUTDIR/LABEL.csv (default /tmp/dnsmesh-soak-compare), and the summary lines
# (load, data dir / live bytes, RSS) of every variant are printed together at the end.
set -euo pipefail
LOAD_DIR="$(cd "$(dirname "$0")" && pwd)"
MINUTES=4
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then MINUTES="$1"; shift; fi
[ $# -gt 0 ] || { sed -n '2,11p' "$0"; exit 2; }
OUTDIR="${OUTDIR:-/tmp/dnsmesh-soak-compare}"
mkdir -p "$OUTDIR"
for v in "$@"; do
  read -r label assigns <<<"$v"
  (
    for a in $assigns; do export "${a?}"; done
    SAMPLE="${SAMPLE:-15}" OUT="$OUTDIR/$label.csv" "$LOAD_DIR/soak.sh" "$MINUTES" \
      >"$OUTDIR/$label.txt" 2>"$OUTDIR/$label.log"
  ) || echo "$label: soak.sh failed (see $OUTDIR/$label.log)" >&2
done
echo "## Short churn runs, $MINUTES min each, $(date -u +%Y-%m-%d)"
for v in "$@"; do
  read -r label _ <<<"$v"
  f="$OUTDIR/$label.txt"
  [ -f "$f" ] || continue
  echo "### $label"
  grep -E '^(load:|rss_kb |disk_bytes |data dir)' "$f" || true
done
