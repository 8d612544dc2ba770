"""`pytest_mproc.Settings`: how the main reaches the hosts of a fleet run (`--remote-worker`)
and where things go on them. Call these at import time of your conftest.py (the main reads
them when the run starts)."""

from __future__ import annotations

from pathlib import Path


class Settings:
    ssh_username: str | None = None
    # Kept in this process only: handed to ssh through SSH_ASKPASS, never in argv or a file.
    ssh_password: str | None = None
    cache_dir: Path | None = None
    tmp_root: Path | None = None

    @classmethod
    def set_ssh_credentials(cls, username: str, password: str | None = None) -> None:
        """The user to log in as on every host (instead of ssh's default) and, if the hosts
        take passwords, the password (keys or an agent are preferred)."""
        if not isinstance(username, str) or not username:
            raise ValueError("Settings.set_ssh_credentials: username must be a non-empty string")
        if password is not None and not isinstance(password, str):
            raise ValueError("Settings.set_ssh_credentials: password must be a string or None")
        cls.ssh_username = username
        cls.ssh_password = password

    @classmethod
    def set_cached_dir(cls, path: Path) -> None:
        """The directory on the hosts where bundles and the per-project venv are cached across
        runs (default ~/.cache/pytest_mproc). Hosts may share it (NFS)."""
        cls.cache_dir = Path(path)

    @classmethod
    def set_tmp_root(cls, path: Path) -> None:
        """The directory on the hosts under which each run unpacks its bundle (removed at the
        end of the run; default /tmp)."""
        cls.tmp_root = Path(path)
