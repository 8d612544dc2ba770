"""The Python packages a fleet host needs to run this very pytest-mproc: wheels of
pytest-mproc itself and of everything it requires (pytest, pluggy, ...), rebuilt from what is
installed here, so every host gets the main's exact versions without a package index.

A wheel is rebuilt only when its installed files change (cached by a fingerprint of their
paths, sizes and times under the local cache directory)."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import os
import re
import sys
import time
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

_DIST_INFO_SKIP = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
_EPOCH = (1980, 1, 1, 0, 0, 0)


def local_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "pytest_mproc")


def closure(root: str = "pytest-mproc") -> list[md.Distribution]:
    """`root` and every installed distribution it requires (markers evaluated here)."""
    seen: dict[str, md.Distribution] = {}
    todo = [root]
    while todo:
        name = _norm(todo.pop())
        if name in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue  # not needed on this Python (a marker said so) or optional
        seen[name] = dist
        for line in dist.requires or ():
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def build(dest: Path | None = None) -> tuple[Path, list[str], str]:
    """(directory, wheel file names, pip requirement pinning this pytest-mproc)."""
    dest = dest or local_cache() / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    mproc_version = None
    for dist in closure():
        names.append(_wheel(dist, dest))
        if _norm(dist.metadata["Name"]) == "pytest-mproc":
            mproc_version = dist.version
    _prune(dest.parent, set(names))
    return dest, sorted(names), f"pytest-mproc=={mproc_version}"


KEEP_DAYS = 14


def _prune(cache: Path, current: set[str]) -> None:
    """Wheels and runtime tars not used for KEEP_DAYS days go (what is in use is touched)."""
    now = time.time()
    for p in list((cache / "wheels").glob("*.whl")) + list(cache.glob("runtime-*.tar")):
        try:
            if p.name in current:
                os.utime(p)
            elif now - p.stat().st_mtime > KEEP_DAYS * 86400:
                p.unlink()
                p.with_suffix(".sha256").unlink(missing_ok=True)
        except OSError:
            pass


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _sources(dist: md.Distribution) -> list[tuple[str, Path]]:
    """(path in the wheel, file here) of what the distribution installed."""
    base = Path(dist.locate_file(""))
    files = [str(f) for f in dist.files or ()]
    out = []
    if any(f.endswith(".pth") for f in files) and _norm(dist.metadata["Name"]) == "pytest-mproc":
        # An editable install (development): the package is the source directory itself.
        pkg = Path(__file__).resolve().parent
        for dirpath, dirnames, filenames in os.walk(pkg):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for f in filenames:
                if not f.endswith((".pyc", ".pyo")):
                    p = Path(dirpath, f)
                    out.append((str(Path("pytest_mproc", p.relative_to(pkg))), p))
    else:
        for f in files:
            if f.startswith("..") or "__pycache__" in f or f.endswith((".pyc", ".pth")) or ".dist-info/" in f:
                continue
            out.append((f, base / f))
    info = Path(dist._path)  # the .dist-info directory
    for p in sorted(info.rglob("*")):
        if p.is_file() and p.name not in _DIST_INFO_SKIP:
            out.append((f"{info.name}/{p.relative_to(info)}", p))
    return sorted(out)


def _wheel(dist: md.Distribution, dest: Path) -> str:
    sources = _sources(dist)
    fp = hashlib.sha256()
    for arc, p in sources:
        st = p.stat()
        fp.update(f"{arc}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    tag = tags[0] if tags else "py3-none-any"
    # The build tag (the fingerprint) must start with a digit.
    filename = f"{name}-{dist.version}-0{fp.hexdigest()[:12]}-{tag}.whl"
    target = dest / filename
    if target.exists():
        return filename
    info = next(arc.split("/")[0] for arc, _ in sources if ".dist-info/" in arc)
    record = []
    tmp = target.with_suffix(f".{os.getpid()}.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for arc, p in sources:
            data = p.read_bytes()
            zi = zipfile.ZipInfo(arc, _EPOCH)
            zi.external_attr = (0o755 if os.access(p, os.X_OK) else 0o644) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        zi = zipfile.ZipInfo(f"{info}/RECORD", _EPOCH)
        zi.external_attr = 0o644 << 16
        z.writestr(zi, "\n".join(record) + "\n")
    os.replace(tmp, target)
    return filename


if __name__ == "__main__":  # pragma: no cover (a manual check)
    d, names, req = build()
    print(d, req, *names, sep="\n", file=sys.stdout)
