"""Real ssh servers for the fleet tests: `sshd` processes started on free ports with throwaway
host keys, user keys and configuration (never the machine's own ssh setup), optionally inside a
network namespace; and the client side (a key pair, a known_hosts file and an ssh config file
passed with --mproc-ssh-config)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def available() -> str | None:
    """Why real ssh cannot be used here (None: it can)."""
    if os.geteuid() != 0:
        return "sshd needs root"
    if not os.path.exists(SSHD):
        return "no sshd (openssh-server)"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Client:
    """The user side: one key pair, known_hosts with every server's host key, a config file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        self.key = path / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        self.known_hosts = path / "known_hosts"
        self.known_hosts.write_text("")
        self.config = path / "ssh_config"
        self.hosts: list[str] = []
        self.write_config()

    def write_config(self, user: str = "root") -> None:
        self.config.write_text(
            f"Host *\n"
            f"  User {user}\n"
            f"  IdentityFile {self.key}\n"
            f"  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.known_hosts}\n"
            f"  GlobalKnownHostsFile /dev/null\n"
            f"  StrictHostKeyChecking yes\n"
            f"  LogLevel ERROR\n"
        )

    def trust(self, server: "Server") -> None:
        key = (server.dir / "host_ed25519.pub").read_text().split()
        with self.known_hosts.open("a") as f:
            f.write(f"[{server.host}]:{server.port} {key[0]} {key[1]}\n")


class Server:
    def __init__(self, path: Path, client: Client, host: str = "127.0.0.1", port: int | None = None,
                 netns: str | None = None, password_auth: bool = False, pubkey_auth: bool = True) -> None:
        self.dir = path
        self.host = host
        # In a namespace the port is free there: any port (ports are per namespace).
        self.port = port or free_port("127.0.0.1" if netns else host)
        self.netns = netns
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path / "host_ed25519")], check=True)
        (path / "authorized_keys").write_text((client.key.with_suffix(".pub")).read_text())
        self.config = path / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\n"
            f"ListenAddress {host}\n"
            f"HostKey {path / 'host_ed25519'}\n"
            f"PidFile none\n"
            f"AuthorizedKeysFile {path / 'authorized_keys'}\n"
            f"StrictModes no\n"
            f"UsePAM no\n"
            f"PermitRootLogin yes\n"
            f"PasswordAuthentication {'yes' if password_auth else 'no'}\n"
            f"PubkeyAuthentication {'yes' if pubkey_auth else 'no'}\n"
            f"KbdInteractiveAuthentication no\n"
            f"AllowTcpForwarding yes\n"
            f"MaxSessions 50\n"
            f"MaxStartups 50\n"
            f"LogLevel VERBOSE\n"
        )
        self.log = path / "sshd.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen(prefix + [SSHD, "-D", "-e", "-f", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        deadline = time.monotonic() + 20
        while "Server listening" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd on {self.host}:{self.port} did not start:\n{self.log.read_text()}")
            time.sleep(0.02)
        return self

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
