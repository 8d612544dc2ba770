"""A reservation service for fleet runs (`--remote-worker http(s)://...`): hosts arrive as
JSON lines over one streaming HTTP response, read lazily, so the run starts on the first host
while the service still prepares the others.

The first line may describe a session: `{"session_id": ..., "start_session_url": ...,
"end_session_url": ..., "heartbeat_url": ...}`. `start_session_url` is fetched before any host
is used, `heartbeat_url` every quarter second until the end (a failure is reported once per
streak of failures and the run goes on), `end_session_url` exactly once at the end, however
the run ends. Later `--remote-worker` URLs are backups, tried in order when an earlier one
cannot be reached or answers with an error.

HTTP is Python's own (urllib): https verifies against the system's CA store, and
`SSL_CERT_FILE` / `SSL_CERT_DIR` are respected."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Callable

from . import remote_hosts

HEARTBEAT_PERIOD = 0.25
REQUEST_TIMEOUT = 10.0


class ReservationError(Exception):
    pass


def _get(url: str, timeout: float = REQUEST_TIMEOUT) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        r.read()


class Reservation:
    def __init__(self, urls: list[str], on_host: Callable[[remote_hosts.HostSpec], None],
                 report: Callable[[str], None]) -> None:
        self.urls = urls
        self.on_host = on_host
        self.report = report
        self.session: dict = {}
        self.hosts = 0
        self.streaming = False
        self._response = None
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._ended = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Opens the stream (backups in order), starts the session; hosts then arrive on a thread.
        ReservationError when no endpoint answers."""
        errors = []
        for url in self.urls:
            try:
                response = urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT)
            except (urllib.error.URLError, OSError, ValueError) as e:
                errors.append(f"{url}: {_reason(e)}")
                continue
            self._response = response
            self.source = url
            # Connecting and the headers have REQUEST_TIMEOUT; the stream itself may pause for
            # as long as the service needs to prepare the next host (end() closes it).
            sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
            if sock is not None:
                sock.settimeout(None)
            break
        else:
            raise ReservationError("no reservation service answered: " + "; ".join(errors))
        self.streaming = True
        first = self._readline()
        if first is not None:
            data = self._parse(first, 1)
            if isinstance(data, dict) and "host" not in data and "session_id" in data:
                self.session = data
                if data.get("start_session_url"):
                    try:
                        _get(data["start_session_url"])
                    except (urllib.error.URLError, OSError, ValueError) as e:
                        self.report(f"reservation: start_session_url failed: {_reason(e)}")
                if data.get("heartbeat_url"):
                    self._heartbeat = threading.Thread(target=self._beat, name="mproc-heartbeat", daemon=True)
                    self._heartbeat.start()
                first = None
        self._reader = threading.Thread(target=self._read, args=(first,), name="mproc-reservation", daemon=True)
        self._reader.start()

    def _readline(self) -> str | None:
        try:
            line = self._response.readline()
        except (OSError, ValueError):
            return None
        return line.decode("utf-8", "replace") if line else None

    def _parse(self, line: str, lineno: int):
        try:
            return json.loads(line)
        except json.JSONDecodeError as e:
            self.report(f"reservation: line {lineno} is not JSON ({e.msg}): skipped")
            return None

    def _read(self, pending: str | None) -> None:
        lineno = 1 if pending is not None else 2
        line = pending
        try:
            while not self._stop.is_set():
                if line is None:
                    line = self._readline()
                    if line is None:
                        break
                text = line.strip()
                if text and not text.startswith("#"):
                    try:
                        spec = remote_hosts.from_json_line(text, f"reservation line {lineno}")
                    except remote_hosts.HostSpecError as e:
                        self.report(f"{e}: skipped")
                    else:
                        self.hosts += 1
                        self.on_host(spec)
                line = None
                lineno += 1
        finally:
            self.streaming = False

    def _beat(self) -> None:
        url = self.session["heartbeat_url"]
        failing = False
        while not self._stop.wait(HEARTBEAT_PERIOD):
            try:
                _get(url, timeout=HEARTBEAT_PERIOD * 2)
                failing = False
            except (urllib.error.URLError, OSError, ValueError) as e:
                if not failing:
                    self.report(f"reservation: heartbeat failed: {_reason(e)} (the run goes on)")
                failing = True

    def end(self) -> None:
        """Ends the session exactly once (also when start failed half-way)."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(HEARTBEAT_PERIOD * 3)
        url = self.session.get("end_session_url")
        if url:
            try:
                _get(url)
            except (urllib.error.URLError, OSError, ValueError) as e:
                self.report(f"reservation: end_session_url failed: {_reason(e)}")
        if self._response is not None:
            try:
                self._response.close()
            except OSError:
                pass


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e)
