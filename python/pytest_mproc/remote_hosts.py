"""The hosts of a fleet run, from `--remote-worker` (repeatable):

- `host[:sshport][;key=value...]`;
- a path to a file of JSON lines `{"host": "h[:port]", "arguments": {...}}` (blank and `#`
  lines skipped), which cannot be combined with more `--remote-worker`.

In the arguments, UPPER_CASE names become environment variables of the run on that host,
`cores` overrides `--cores` there, `jump_host` (`host:port`) is an ssh jump host, and every
other name becomes the pytest option `--name value` there. Problems are HostSpecError with a
message naming the value (and the file line)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from .options import parse_cores

_ENV = re.compile(r"[A-Z_][A-Z0-9_]*")
_OPTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class HostSpecError(ValueError):
    pass


@dataclass
class HostSpec:
    host: str
    port: int | None = None
    jump_host: str | None = None
    cores: str | None = None
    env: list = field(default_factory=list)       # [(NAME, value)]
    options: list = field(default_factory=list)   # ["--name", "value", ...]

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host

    def plan(self, index: int) -> dict:
        return {"index": index, "host": self.host, "port": self.port, "jump_host": self.jump_host,
                "cores": self.cores, "env": self.env, "options": self.options}


def is_reservation_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def parse(values: list[str]) -> list[HostSpec]:
    files = [v for v in values if not is_reservation_url(v) and os.path.isfile(v)]
    if files:
        if len(values) > 1:
            raise HostSpecError(f"--remote-worker {files[0]}: a file of hosts cannot be combined with more --remote-worker")
        return _from_file(files[0])
    return [_from_spec(v) for v in values]


def _from_spec(value: str) -> HostSpec:
    head, *pairs = value.split(";")
    arguments = {}
    for pair in pairs:
        if not pair.strip():
            continue
        key, sep, val = pair.partition("=")
        if not sep:
            raise HostSpecError(f"--remote-worker {value!r}: {pair!r} is not key=value")
        arguments[key.strip()] = val
    return _host(head.strip(), arguments, f"--remote-worker {value!r}")


def _from_file(path: str) -> list[HostSpec]:
    hosts = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            where = f"--remote-worker file {path}, line {lineno}"
            hosts.append(from_json_line(line, where))
    if not hosts:
        raise HostSpecError(f"--remote-worker file {path}: no host in it")
    return hosts


def from_json_line(line: str, where: str) -> HostSpec:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as e:
        raise HostSpecError(f"{where}: invalid JSON at column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("host"), str):
        raise HostSpecError(f'{where}: expected {{"host": "h[:port]", "arguments": {{...}}}}')
    arguments = data.get("arguments", {})
    if not isinstance(arguments, dict):
        raise HostSpecError(f"{where}: 'arguments' must be an object")
    return _host(data["host"], arguments, where)


def _host(hostport: str, arguments: dict, where: str) -> HostSpec:
    host, port = _split(hostport, where)
    spec = HostSpec(host=host, port=port)
    for key, value in arguments.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, (str, int, float)):
            raise HostSpecError(f"{where}: argument {key!r} must be a string or a number")
        value = str(value)
        if key == "cores":
            try:
                parse_cores(value)
            except ValueError as e:
                raise HostSpecError(f"{where}: {e}") from None
            spec.cores = value.strip()
        elif key == "jump_host":
            jh, jp = _split(value, f"{where}: jump_host")
            spec.jump_host = f"{jh}:{jp}" if jp else jh
        elif _ENV.fullmatch(key):
            spec.env.append((key, value))
        elif _OPTION.fullmatch(key):
            spec.options += [f"--{key}", value]
        else:
            raise HostSpecError(f"{where}: {key!r} is not a valid argument name")
    return spec


def _split(hostport: str, where: str) -> tuple[str, int | None]:
    hostport = hostport.strip()
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
    else:
        host, port = hostport, ""
    if not host or any(c.isspace() for c in host) or host.startswith("-"):
        raise HostSpecError(f"{where}: invalid host {hostport!r}")
    if not port:
        return host, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise HostSpecError(f"{where}: invalid ssh port {port!r} (use 1-65535)")
    return host, int(port)
