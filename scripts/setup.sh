#!/usr/bin/env bash
# Installs what building and testing pytest-mproc needs on a fresh Debian machine (as root):
# Debian packages, Python packages, and the package itself (release build, editable).
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server openssh-client)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# Fleet tests: the hosts (sshd on this machine) make venvs with the system's python3.
/usr/bin/python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v useradd >/dev/null 2>&1 || need_apt+=(passwd)
# The timeline page is checked in a real headless browser.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
  "maturin>=1.5,<2" "pytest>=8" pytest-xdist pytest-cov
# Editable install, release profile: the extension lands in python/pytest_mproc/.
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
  -e .
python3 -c "import pytest_mproc._core"
# Third-party plugins for tests/test_plugins.py, in venvs of their own (with and without xdist).
bash scripts/plugins_venv.sh >/dev/null
