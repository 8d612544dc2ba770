#!/usr/bin/env bash
# The main job: the demo suite under `pytest --cores auto`, next to a plain serial run.
set -euo pipefail
cd "$(dirname "$0")/../examples/demo"
echo "== plain pytest =="
python3 -m pytest -q -p no:cacheprovider | tail -1
echo "== pytest --cores auto =="
python3 -m pytest -q -p no:cacheprovider --cores auto | tail -1
