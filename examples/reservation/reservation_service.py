#!/usr/bin/env python3
"""An example reservation service for pytest-mproc fleet runs (stdlib only).

It owns a pool of hosts (a file of JSON lines, as `--remote-worker FILE` takes) and hands them
out to runs that ask:

    GET /reserve?count=N   a streamed response of JSON lines: first the session line
                           {"session_id", "start_session_url", "end_session_url",
                           "heartbeat_url"}, then one line per host as soon as it is ready
                           ("ready" is simulated by --prepare-seconds per host)
    GET /start/<id>        the run starts using its hosts
    GET /heartbeat/<id>    the run is alive (a session silent for --expire-seconds is ended)
    GET /end/<id>          the run is over: its hosts go back to the pool

    python3 reservation_service.py hosts.jsonl --port 8700 [--prepare-seconds 2]
    pytest --cores 2 --remote-worker http://127.0.0.1:8700/reserve?count=2

Every request is logged on stdout. A real device farm would prepare (flash, boot, unlock) a
device where this one sleeps."""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Pool:
    def __init__(self, hosts: list[dict], prepare: float, expire: float) -> None:
        self.free = list(hosts)
        self.sessions: dict[str, dict] = {}
        self.prepare = prepare
        self.expire = expire
        self.lock = threading.Lock()

    def reserve(self, count: int) -> tuple[str, list[dict]]:
        with self.lock:
            taken, self.free = self.free[:count], self.free[count:]
            sid = uuid.uuid4().hex[:12]
            self.sessions[sid] = {"hosts": taken, "seen": time.monotonic()}
        return sid, taken

    def touch(self, sid: str) -> bool:
        with self.lock:
            s = self.sessions.get(sid)
            if s:
                s["seen"] = time.monotonic()
            return s is not None

    def end(self, sid: str) -> bool:
        with self.lock:
            s = self.sessions.pop(sid, None)
            if s:
                self.free.extend(s["hosts"])
            return s is not None

    def expire_silent(self) -> None:
        while True:
            time.sleep(1)
            now = time.monotonic()
            with self.lock:
                dead = [sid for sid, s in self.sessions.items() if now - s["seen"] > self.expire]
            for sid in dead:
                self.end(sid)
                print(f"session {sid} expired (no heartbeat for {self.expire:g} s): hosts released", flush=True)


def handler(pool: Pool):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            print(f"{self.address_string()} {fmt % args}", flush=True)

        def _reply(self, code: int, body: bytes = b"ok\n") -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urlparse(self.path)
            base = f"http://{self.headers.get('Host')}"
            parts = url.path.strip("/").split("/")
            if parts[0] == "reserve":
                count = int(parse_qs(url.query).get("count", ["1"])[0])
                sid, hosts = pool.reserve(count)
                if not hosts:
                    pool.end(sid)
                    return self._reply(503, b"no host free\n")
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Connection", "close")
                self.end_headers()
                session = {"session_id": sid, "start_session_url": f"{base}/start/{sid}",
                           "end_session_url": f"{base}/end/{sid}", "heartbeat_url": f"{base}/heartbeat/{sid}"}
                self.wfile.write((json.dumps(session) + "\n").encode())
                self.wfile.flush()
                for host in hosts:
                    time.sleep(pool.prepare)  # a device farm would prepare the device here
                    self.wfile.write((json.dumps(host) + "\n").encode())
                    self.wfile.flush()
                self.close_connection = True
            elif parts[0] in ("start", "heartbeat") and len(parts) == 2:
                self._reply(200 if pool.touch(parts[1]) else 404)
            elif parts[0] == "end" and len(parts) == 2:
                self._reply(200 if pool.end(parts[1]) else 404)
            else:
                self._reply(404, b"unknown\n")

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("hosts", help="file of JSON lines: {\"host\": \"h[:port]\", \"arguments\": {...}}")
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8700)
    ap.add_argument("--prepare-seconds", type=float, default=0.0)
    ap.add_argument("--expire-seconds", type=float, default=30.0)
    args = ap.parse_args()
    with open(args.hosts) as f:
        hosts = [json.loads(line) for line in f if line.strip() and not line.startswith("#")]
    pool = Pool(hosts, args.prepare_seconds, args.expire_seconds)
    threading.Thread(target=pool.expire_silent, daemon=True).start()
    server = ThreadingHTTPServer((args.bind, args.port), handler(pool))
    print(f"reservation service on http://{args.bind}:{server.server_address[1]} with {len(hosts)} hosts", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
