#!/usr/bin/env bash
# Runs every test: Rust (core + bridge, multi-process and kill tests), the loom model check of
# the ring protocol, the pytest suite of the plugin, and the plugin's core tests on pytest 8.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace
# Every unsafe block states why it is sound (#![deny(clippy::undocumented_unsafe_blocks)] per crate).
cargo clippy --release --workspace --all-targets -q -- -D clippy::undocumented_unsafe_blocks
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --test loom_protocol --test loom_wakeup --test loom_lease
# The plugin's own suite runs under the plugin itself (eating our own cooking).
python3 -m pytest tests -q --cores auto
# The plugin must load and behave on pytest 8.x too (the original broke on pytest 9).
venv=${PYTEST8_VENV:-/tmp/pytest-mproc-pytest8}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "pytest>=8,<9" "maturin>=1.5,<2"
"$venv/bin/pip" install -q --disable-pip-version-check -e .
"$venv/bin/python" -m pytest tests/test_parity.py tests/test_crashes.py tests/test_options.py tests/test_process_parity.py tests/test_gc_freeze.py tests/test_wind_down.py -q -p no:cacheprovider --cores auto
"$venv/bin/python" -m pytest tests/test_multihost.py -q -p no:cacheprovider -k "two_nodes or killed or fixture" --cores auto
