"""Fleet runs fed by a reservation service (`--remote-worker http(s)://...`), for real: an HTTP
server started here streams the session line and then hosts (real sshd servers), each host line
sent only when the test's condition holds, and records every start, heartbeat and end call.
Also: artifacts written by the tests on the hosts come back to the main."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import threading
import time
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import sshd
from fleet_support import (  # noqa: F401 (fixtures)
    BLOCKING_TEST, Project, counts, project, remote_processes, servers, shared_cache, ssh_client,
    wait_until_running)

pytestmark = pytest.mark.skipif(sshd.available() is not None, reason=str(sshd.available()))


class Service:
    """The reservation service: `/reserve` streams `lines`, each `(line, gate)` sent once
    `gate()` is true (checked as the stream goes; None: at once); `/start`, `/heartbeat` and
    `/end` are recorded with their times; `/broken` answers 500."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.lines: list = []
        self.session = True
        self.calls: list[tuple[str, float]] = []
        self.sent: list[float] = []
        self.close_after: int | None = None
        self.on_start = lambda: None
        self.seen_at_start = None
        # heartbeat call number (1-based) -> HTTP status; after_heartbeats(n) runs on each call
        self.heartbeat_status: dict[int, int] = {}
        self.after_heartbeat = lambda n: None
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _ok(self, code=200):
                body = b"ok\n"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?")[0].strip("/")
                if path == "broken":
                    return self._ok(500)
                if path in ("start", "heartbeat", "end"):
                    if path == "start":
                        service.seen_at_start = service.on_start()
                    service.calls.append((path, time.monotonic()))
                    if path == "heartbeat":
                        n = len(service.times("heartbeat"))
                        service.after_heartbeat(n)
                        return self._ok(service.heartbeat_status.get(n, 200))
                    return self._ok()
                if path != "reserve":
                    return self._ok(404)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Connection", "close")
                self.end_headers()
                base = f"{service.scheme}://127.0.0.1:{service.port}"
                if service.session:
                    self._line({"session_id": "s1", "start_session_url": f"{base}/start",
                                "end_session_url": f"{base}/end", "heartbeat_url": f"{base}/heartbeat"})
                for n, (line, gate) in enumerate(service.lines):
                    if service.close_after is not None and n >= service.close_after:
                        break
                    deadline = time.monotonic() + 120
                    while gate is not None and not gate() and time.monotonic() < deadline:
                        time.sleep(0.05)
                    self._line(line)
                    service.sent.append(time.monotonic())
                self.close_connection = True

            def _line(self, data):
                self.wfile.write((json.dumps(data) + "\n").encode())
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "reserve") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{path}?count=2"

    def times(self, kind: str) -> list[float]:
        return [t for k, t in self.calls if k == kind]

    def largest_heartbeat_gap(self) -> float:
        """Between the session's start and its end, with every heartbeat in between."""
        marks = self.times("start")[:1] + self.times("heartbeat") + self.times("end")[:1]
        return max(b - a for a, b in zip(marks, marks[1:]))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def service():
    s = Service()
    yield s
    s.close()


def host_line(project: Project, server: sshd.Server, tag: str, **arguments) -> dict:
    args = {"LEDGER": str(project.ledger), "TAG": tag, "RUN_TAG": project.tag, "MARKS": str(project.marks), **arguments}
    return {"host": server.address, "arguments": args}


def ran_on(project: Project, tag: str):
    return lambda: any(r[1] == tag for r in project.rows())


# Every test on host A waits until a test ran on host B, so B, whose line the service sends only
# once a test started on A, still finds work (A's one worker holds a test, its bridge a few more).
WAITING_SUITE = '''
import os, pathlib, time, pytest

@pytest.mark.parametrize("i", range(12))
def test_work(i):
    if os.environ.get("TAG") == "A":
        ledger = pathlib.Path(os.environ["LEDGER"])
        deadline = time.monotonic() + 120
        while "|B|" not in ledger.read_text():
            assert time.monotonic() < deadline, "host B never came"
            time.sleep(0.02)
    pathlib.Path(os.environ["PTMPROC_WORKER_ARTIFACTS_DIR"], f"{os.environ['TAG']}-{i}.txt").write_text(f"from {os.environ['TAG']}")
'''


def test_hosts_arrive_lazily_heartbeats_flow_and_the_session_ends_once(project, servers, service):
    """The second host exists only after a test ran on the first; both run tests; heartbeats
    never pause for more than a second; the session ends exactly once; artifacts come back."""
    project.write(WAITING_SUITE)
    a, b = servers("127.0.0.3"), servers("127.0.0.4")
    service.lines = [(host_line(project, a, "A", cores=1, PTMPROC_WORKER_ARTIFACTS_DIR="/nonexistent/user/choice"), None),
                     (host_line(project, b, "B", cores=1), ran_on(project, "A"))]
    # When the session starts, no host has been logged into yet.
    service.on_start = lambda: "Accepted publickey" in (a.log.read_text() + b.log.read_text())
    main = project.main("-q", "--cores", "1", "--remote-worker", service.url())
    assert main.wait(120) == 0, main.text()
    text = main.text()
    assert counts(text) == {"passed": 12}
    rows = project.rows()
    assert Counter(r[0] for r in rows) == Counter({f"tests/test_suite.py::test_work[{i}]": 1 for i in range(12)})
    assert {r[1] for r in rows} == {"A", "B"}
    assert "reservation session s1" in text
    assert len(service.times("start")) == 1 and len(service.times("end")) == 1
    assert service.seen_at_start is False
    assert service.largest_heartbeat_gap() <= 1.0
    # Artifacts: each host's files, zipped there and pulled back (the user's value was overridden).
    for n, tag in ((0, "A"), (1, "B")):
        z = project.path / "artifacts" / f"Worker-{n}" / "artifacts.zip"
        with zipfile.ZipFile(z) as zf:
            names = zf.namelist()
            assert names and all(name.startswith(f"{tag}-") for name in names)
            assert {zf.read(name).decode() for name in names} == {f"from {tag}"}
        assert Counter(r[1] for r in rows)[tag] == len(names)
        assert f"Worker-{n} " in text and f"artifacts in {z}" in text


def test_ctrl_c_ends_the_session_once(project, servers, service):
    project.write(BLOCKING_TEST)
    a = servers("127.0.0.3")
    service.lines = [(host_line(project, a, "A"), None)]
    main = project.main("-q", "--cores", "1", "--remote-worker", service.url())
    wait_until_running(project, main)
    os.kill(main.pid, signal.SIGINT)
    assert main.wait(90) == 2, main.text()
    assert len(service.times("end")) == 1
    assert service.largest_heartbeat_gap() <= 1.0
    assert remote_processes(project.tag) == []


def test_exitfirst_ends_the_session_once(project, servers, service):
    project.write('''
        import pytest
        def test_a_fails():
            assert 0
        @pytest.mark.parametrize("i", range(30))
        def test_more(i):
            pass
        ''')
    a = servers("127.0.0.3")
    service.lines = [(host_line(project, a, "A"), None)]
    main = project.main("-q", "-x", "-p", "no:randomly", "--cores", "1", "--remote-worker", service.url())
    assert main.wait(90) == 1, main.text()
    assert "1 failed" in main.text()
    assert len(service.times("end")) == 1


def test_a_failing_primary_endpoint_falls_back_to_the_backup(project, servers, service):
    project.write("def test_one():\n    pass\n")
    a = servers("127.0.0.3")
    service.lines = [(host_line(project, a, "A"), None)]
    main = project.main("-q", "--cores", "1", "--remote-worker", service.url("broken"),
                        "--remote-worker", service.url())
    assert main.wait(90) == 0, main.text()
    assert re.search(r"reservation service: using http://127\.0\.0\.1:\d+/reserve\?count=2 \(earlier endpoints failed\)", main.text())
    assert counts(main.text()) == {"passed": 1}
    assert len(service.times("end")) == 1


def test_a_stream_closed_early_runs_on_the_hosts_it_gave(project, servers, service):
    project.write("import pytest\n@pytest.mark.parametrize('i', range(6))\ndef test_x(i):\n    pass\n")
    a, b = servers("127.0.0.3"), servers("127.0.0.4")
    service.lines = [(host_line(project, a, "A"), None), (host_line(project, b, "B"), None)]
    service.close_after = 1
    main = project.main("-q", "--cores", "1", "--remote-worker", service.url())
    assert main.wait(90) == 0, main.text()
    assert counts(main.text()) == {"passed": 6}
    assert {r[1] for r in project.rows()} == {"A"}
    assert len(service.times("end")) == 1


def test_no_host_from_the_service_ends_the_run_naming_the_tests_not_run(project, service):
    project.write("def test_one():\n    pass\n")
    service.lines = []
    main = project.main("-q", "--cores", "1", "--mproc-node-wait", "2", "--remote-worker", service.url())
    assert main.wait(90) == 2, main.text()
    assert "no host of --remote-worker could take part; 1 tests not run: tests/test_suite.py::test_one" in main.text()
    assert len(service.times("end")) == 1


def test_no_service_answering_is_one_line(project, service):
    project.write("def test_one():\n    pass\n")
    main = project.main("-q", "--cores", "1", "--remote-worker", service.url("broken"))
    assert main.wait(90) == 2, main.text()
    assert re.search(r"pytest-mproc: no reservation service answered: http://127\.0\.0\.1:\d+/broken\?count=2: HTTP 500", main.text())
    assert "Traceback" not in main.text()


@pytest.fixture
def throwaway_ca(tmp_path):
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=ptmproc test CA")
    (tmp_path / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem",
        "-days", "2", "-extfile", "ext.cnf")
    return tmp_path


def test_https_with_a_ca_from_ssl_cert_file(project, servers, throwaway_ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(throwaway_ca / "server.pem", throwaway_ca / "server.key")
    service = Service(tls=ctx)
    try:
        project.write("def test_one():\n    pass\n")
        a = servers("127.0.0.3")
        service.lines = [(host_line(project, a, "A"), None)]
        # Without the CA the service is not trusted ...
        main = project.main("-q", "--cores", "1", "--remote-worker", service.url())
        assert main.wait(90) == 2, main.text()
        assert "CERTIFICATE_VERIFY_FAILED" in main.text()
        # ... with it (SSL_CERT_FILE) it is.
        main = project.main("-q", "--cores", "1", "--remote-worker", service.url(),
                            env={"SSL_CERT_FILE": str(throwaway_ca / "ca.pem")})
        assert main.wait(90) == 0, main.text()
        assert counts(main.text()) == {"passed": 1}
        assert len(service.times("end")) == 1
    finally:
        service.close()


def test_the_example_service_drives_a_run(project, servers, tmp_path):
    """examples/reservation/reservation_service.py, as the docs walk through it."""
    project.write("import pytest\n@pytest.mark.parametrize('i', range(4))\ndef test_x(i):\n    pass\n")
    a = servers("127.0.0.3")
    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps(host_line(project, a, "A")) + "\n")
    port = sshd.free_port()
    example = Path(__file__).resolve().parent.parent / "examples" / "reservation" / "reservation_service.py"
    svc = subprocess.Popen([os.sys.executable, str(example), str(pool), "--port", str(port)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "reservation service on" in svc.stdout.readline()
        main = project.main("-q", "--cores", "1", "--remote-worker", f"http://127.0.0.1:{port}/reserve?count=1")
        assert main.wait(90) == 0, main.text()
        assert counts(main.text()) == {"passed": 4}
    finally:
        svc.terminate()
        out = svc.communicate(timeout=10)[0]
    assert re.search(r'"GET /end/\w+ HTTP/1.1" 200', out), out


def test_a_failing_heartbeat_is_reported_once_per_streak(project, servers, service):
    """Heartbeats 1-3 and 6-7 fail: two reports, and the run goes on. The test waits until the
    service has seen 9 heartbeats (it leaves a mark)."""
    project.write('''
        import os, pathlib, time
        def test_waits_for_the_heartbeats():
            mark = pathlib.Path(os.environ["MARKS"], "heartbeats")
            deadline = time.monotonic() + 60
            while not mark.exists():
                assert time.monotonic() < deadline
                time.sleep(0.02)
        ''')
    a = servers("127.0.0.3")
    service.lines = [(host_line(project, a, "A"), None)]
    service.heartbeat_status = {1: 500, 2: 500, 3: 500, 6: 503, 7: 503}
    service.after_heartbeat = lambda n: (project.marks / "heartbeats").touch() if n >= 9 else None
    main = project.main("-q", "--cores", "1", "--remote-worker", service.url())
    assert main.wait(90) == 0, main.text()
    reports = re.findall(r"reservation: heartbeat failed: (HTTP \d+)[^\n]*\(the run goes on\)", main.text())
    assert reports == ["HTTP 500", "HTTP 503"], main.text()
    assert len(service.times("end")) == 1


def test_a_host_lost_mid_run_still_gets_its_artifacts_pulled(project, servers, service):
    """A test on host A kills A's node (its pytest process, SIGKILL) after leaving an artifact:
    the node is lost, B runs the rest, and A's artifacts still come back."""
    project.write('''
        import os, pathlib, signal, time, pytest

        def _ppid(pid):
            return int(pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])

        @pytest.mark.parametrize("i", range(8))
        def test_work(i):
            tag = os.environ["TAG"]
            if tag == "A":
                pathlib.Path(os.environ["PTMPROC_WORKER_ARTIFACTS_DIR"], "before-loss.txt").write_text("A was here")
                # worker -> fork server -> the node's pytest
                os.kill(_ppid(os.getppid()), signal.SIGKILL)
                time.sleep(60)
        ''')
    a, b = servers("127.0.0.3"), servers("127.0.0.4")
    service.lines = [(host_line(project, a, "A"), None), (host_line(project, b, "B"), ran_on(project, "A"))]
    main = project.main("-q", "--cores", "1", "--remote-worker", service.url())
    rc = main.wait(120)
    # A dies within milliseconds of starting its test: if the main heard that the test had
    # started, it reports it as crashed there; if not, B runs it (the rule is tested in
    # test_multihost.py). Either way every test has exactly one result.
    assert (rc, counts(main.text())) in ((1, {"passed": 7, "failed": 1}), (0, {"passed": 8})), main.text()
    assert re.search(r"lost node Worker-0", main.text()), main.text()
    with zipfile.ZipFile(project.path / "artifacts" / "Worker-0" / "artifacts.zip") as zf:
        assert zf.read("before-loss.txt") == b"A was here"
    assert len(service.times("end")) == 1


def test_a_stream_pausing_longer_than_the_request_timeout_is_still_read(monkeypatch, service):
    """Device farms may take minutes to prepare the next host: only connecting and the headers
    are bounded by the request timeout, not the pauses of the stream."""
    from pytest_mproc import reservation

    monkeypatch.setattr(reservation, "REQUEST_TIMEOUT", 0.3)
    release = threading.Event()
    service.lines = [({"host": "h1"}, None), ({"host": "h2"}, release.is_set)]
    arrived, reports = [], []
    r = reservation.Reservation([service.url()], arrived.append, reports.append)
    r.start()
    try:
        deadline = time.monotonic() + 10
        while not arrived and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [h.host for h in arrived] == ["h1"]
        # A pause three times the request timeout: the reader must still be waiting.
        paused_until = time.monotonic() + 1.0
        while time.monotonic() < paused_until:
            assert r.streaming, reports
            time.sleep(0.05)
        release.set()
        deadline = time.monotonic() + 10
        while len(arrived) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [h.host for h in arrived] == ["h1", "h2"], reports
    finally:
        r.end()
    assert len(service.times("end")) == 1
