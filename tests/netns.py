"""Network namespaces as separate hosts for the multi-host tests: each joined by a veth pair to
this host or to another namespace, with addresses 10.<subnet>.0.1 (the near side) and
10.<subnet>.0.2 (inside). A namespace has routes only to the subnets it is on: one joined only
to another namespace cannot reach this host at all."""

from __future__ import annotations

import os
import subprocess


class Unavailable(Exception):
    pass


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = (["ip", "netns", "exec", ns, "ip"] if ns else ["ip"]) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise Unavailable(f"{' '.join(cmd)}: {r.stderr.strip()}")


class Namespaces:
    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise Unavailable("network namespaces need root")
        self.names: list[str] = []
        self.links: list[str] = []
        self.tag = f"{os.getpid() % 100000}"

    def add(self, label: str) -> str:
        name = f"mp{self.tag}{label}"
        _ip("netns", "add", name)
        self.names.append(name)
        _ip("link", "set", "lo", "up", ns=name)
        return name

    def join(self, near: str | None, far: str, subnet: int) -> tuple[str, str]:
        """A veth pair between `near` (None: this host) and `far`: (near address, far address)."""
        a, b = f"v{self.tag}{subnet}a", f"v{self.tag}{subnet}b"
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        self.links.append(a)
        if near is not None:
            _ip("link", "set", a, "netns", near)
        _ip("link", "set", b, "netns", far)
        _ip("addr", "add", f"10.{subnet}.0.1/24", "dev", a, ns=near)
        _ip("link", "set", a, "up", ns=near)
        _ip("addr", "add", f"10.{subnet}.0.2/24", "dev", b, ns=far)
        _ip("link", "set", b, "up", ns=far)
        return f"10.{subnet}.0.1", f"10.{subnet}.0.2"

    def close(self) -> None:
        for name in self.names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)


def free_subnets(count: int) -> list[int]:
    """Subnets 10.N.0.0/24 not used by any address of this host (per test process)."""
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    base = 100 + (os.getpid() % 30) * 5
    out = [n for n in range(base, 250) if f" 10.{n}." not in used]
    return out[:count]
