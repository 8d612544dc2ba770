"""The end of a --cores run: the summary does not wait for the workers' and the fork server's
exits (they tear down copies of the main's memory meanwhile), and every one of them is reaped
before the session is over."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

# In a worker, the last thing before its process exits (the fork server's flush of
# sys.stdout) waits for a file the main writes while it prints its summary. If the main waited
# for the workers to exit before its summary, the worker would give up after 60 s and say so.
LINGERING_WORKER = """
    import os, sys, time, pytest

    MARK = os.environ["SUMMARY_MARK"]

    class WaitsForTheSummary:
        def __init__(self, stream):
            self.stream = stream

        def write(self, text):
            return self.stream.write(text)

        def flush(self):
            deadline = time.monotonic() + 60
            while not os.path.exists(MARK) and time.monotonic() < deadline:
                time.sleep(0.01)
            with open(os.environ["WORKER_SAW"], "a") as f:
                f.write("summary\\n" if os.path.exists(MARK) else "timed out\\n")
            self.stream.flush()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(session):
        if os.environ.get("PTMPROC_WORKER"):
            sys.stdout = WaitsForTheSummary(sys.stdout)

    def pytest_terminal_summary():
        if not os.environ.get("PTMPROC_WORKER"):
            open(MARK, "w").close()
"""


def test_summary_does_not_wait_for_worker_exits(tmp_path):
    (tmp_path / "conftest.py").write_text(textwrap.dedent(LINGERING_WORKER))
    (tmp_path / "test_few.py").write_text("import pytest\n@pytest.mark.parametrize('n', range(4))\n"
                                          "def test_n(n): pass\n")
    env = dict(os.environ, SUMMARY_MARK=str(tmp_path / "mark"), WORKER_SAW=str(tmp_path / "saw.txt"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--cores", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert "4 passed" in proc.stdout, proc.stdout + proc.stderr
    # Both workers were still there when the main wrote its summary, and went on after it.
    assert (tmp_path / "saw.txt").read_text().splitlines() == ["summary", "summary"]


REAPED = """
    import os, sys, pytest

    code = pytest.main(["-q", "-p", "no:cacheprovider", "--cores", "3", sys.argv[1]])
    # Every process of the run is gone and reaped: none of our children is left, not even a
    # zombie.
    kids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():
                kids.append((pid, fields[0]))
    print("CHILDREN", kids, "EXIT", int(code))
"""


def test_every_process_of_the_run_is_reaped_when_the_session_ends(tmp_path):
    (tmp_path / "test_few.py").write_text("import pytest\n@pytest.mark.parametrize('n', range(6))\n"
                                          "def test_n(n): pass\n")
    (tmp_path / "run.py").write_text(textwrap.dedent(REAPED))
    proc = subprocess.run([sys.executable, "run.py", "test_few.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=180)
    assert "CHILDREN [] EXIT 0" in proc.stdout, proc.stdout + proc.stderr
