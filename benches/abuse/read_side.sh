#!/usr/bin/env bash
# Issue 12, read side: the worst UDP amplification factor (bytes out / bytes in, per reply
# and under a flood with the shipped RRL) and the DNS/TCP fd-flood behaviour (connections
# held vs queries still answered, node CPU, EMFILE backoff), on a real node on loopback with
# [limits] limit_loopback = true and a soft/hard open-files limit of 1024.
#
# Runs the end-to-end tests that measure them and prints their figures:
#   bash benches/abuse/read_side.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --test abuse_amplification --test abuse_tcp -- --nocapture --test-threads=1 2>&1 |
    grep -E 'amplification per reply|RRL flood|worst bytes out|TCP flood|EMFILE flood|closed after|cut after|byte-identical|test result'
