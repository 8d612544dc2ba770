#!/usr/bin/env bash
# Fuzzes what pytest-mproc reads from outside (wire frames, both sides of the handshake, ring
# and fixture-store segments) with cargo-fuzz/libFuzzer, one target after the other.
#   bash scripts/fuzz.sh [seconds per target, default 600] [target ...]
# Needs cargo-fuzz (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP=1 lets the stable toolchain
# take the sanitizer flags cargo-fuzz passes. Findings land in fuzz/artifacts/<target>/; each
# one fixed gets a regression test. Prints one line per target: runs, seconds, findings.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire_frames handshake ring_segment store_segment)
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O >/dev/null
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log=$(mktemp)
  set +e
  cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=4096 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  found=$(find "artifacts/$t" -type f | wc -l)
  echo "$t: $runs runs in ${secs}s, exit $rc, $found findings (log: $log)"
done
