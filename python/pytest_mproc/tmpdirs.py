"""Race-free temporary directories: `mp_tmpdir` and `mp_tmpdir_factory` (and the original
code's names `mp_tmp_dir`, `mp_tmp_dir_factory`).

Under --cores every worker gets its own pytest basetemp (`<run basetemp>/gwN`) below the one
basetemp the main process created, so pytest's own `tmp_path`/`tmpdir` and these fixtures hand
out directories unique across workers, and no worker ever cleans up another's directories
(only the main prunes old runs, as a serial pytest does)."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest


class MpTmpDirFactory:
    """Makes fresh, empty, uniquely named directories that live until the run ends."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._factory = tmp_path_factory

    def create_tmpdir(self, prefix: str = "mp") -> Path:
        return self._factory.mktemp(prefix, numbered=True)

    # The original code's spelling.
    create_tmp_dir = create_tmpdir


@pytest.fixture(scope="session")
def mp_tmpdir_factory(tmp_path_factory) -> MpTmpDirFactory:
    return MpTmpDirFactory(tmp_path_factory)


@pytest.fixture
def mp_tmpdir(request, mp_tmpdir_factory) -> Path:
    name = re.sub(r"[\W]", "_", request.node.name)[:30] or "mp"
    return mp_tmpdir_factory.create_tmpdir(name)


@pytest.fixture(scope="session")
def mp_tmp_dir_factory(mp_tmpdir_factory) -> MpTmpDirFactory:
    return mp_tmpdir_factory


@pytest.fixture
def mp_tmp_dir(mp_tmpdir) -> Path:
    return mp_tmpdir


def give_worker_its_own_basetemp(config, wid: str) -> None:
    """In a worker: basetemp := <the main's basetemp>/<wid> (the main resolved it before fork)."""
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None or factory._basetemp is None:
        return
    mine = factory._basetemp / wid
    mine.mkdir(mode=0o700, exist_ok=True)
    factory._basetemp = mine
    # What pytest does with basetemp when a session ends is the main's, with the run's outcome:
    # removing it when the run passed under tmp_path_retention_policy=failed (a worker's own
    # session always ends "passed": it would delete its failed tests' directories), and, from
    # pytest 9, pruning old numbered runs (inherited at fork as the factory's exit stack; each
    # worker ran it again, ~3 ms at the end of every run, racing the main's).
    factory._given_basetemp = mine
    if hasattr(factory, "_exit_stack"):
        factory._exit_stack = contextlib.ExitStack()
