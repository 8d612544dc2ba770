#!/usr/bin/env bash
# The venvs in which tests/test_plugins.py runs third-party pytest plugins (pinned, from PyPI),
# kept apart so they do not change the behaviour of every other pytest run (pytest-randomly
# shuffles every run it is installed in): one with pytest-xdist installed, one without (plugins
# behave differently when xdist is importable). Prints the two venvs' pythons.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${PTMPROC_PLUGINS_VENV:-/tmp/pytest-mproc-plugins}
plugins=("pytest==9.2.0" "maturin>=1.5,<2"
  "pytest-timeout==2.4.0" "pytest-rerunfailures==16.7" "hypothesis==6.170.15"
  "pytest-benchmark==5.3.1" "syrupy==7.0.1" "pytest-randomly==5.1.0" "pytest-asyncio==1.5.0"
  "pytest-django==4.14.0" "Django==5.2.19" "pytest-html==4.2.0" "pytest-order==1.5.0"
  "pytest-cov==7.1.0")
for venv in "$base" "$base-noxdist"; do
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  extra=()
  [ "$venv" = "$base" ] && extra=("pytest-xdist==3.8.0")
  "$venv/bin/pip" install -q --disable-pip-version-check "${plugins[@]}" "${extra[@]}" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -e . >&2
  echo "$venv/bin/python"
done
