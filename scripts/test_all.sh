#!/usr/bin/env bash
# Runs every test: Rust (core + bridge, multi-process and kill tests), the loom model check of
# the ring protocol, and the Python/pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --test loom_protocol
python3 -m pytest tests -q
