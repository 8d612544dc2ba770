"""The project definition of a fleet run (`--project_structure PATH`, else
./ptmproc_project.cfg): what to bundle for the hosts and which scripts to run there.

JSON with `project_name` (required), `test_files` (a glob or a list of globs), and optional
`prepare_script` / `finalize_script`; every path relative to the file's directory and at or
below it. A trailing comma before `}` or `]` is accepted (the original documentation's own
example has one). Problems are ConfigError with a message naming the file and the key (and
line and column for syntax)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_NAME = "ptmproc_project.cfg"
_KEYS = {"project_name", "test_files", "prepare_script", "finalize_script"}
_SKIP_DIRS = {"__pycache__", ".git", ".pytest_cache", ".hg", ".tox", ".venv", ".mypy_cache"}


class ConfigError(ValueError):
    pass


@dataclass
class ProjectConfig:
    path: Path
    project_name: str
    root: Path
    files: list[str] = field(default_factory=list)  # relative to root, sorted
    prepare_script: str | None = None
    finalize_script: str | None = None

    @property
    def requirements_dir(self) -> str | None:
        """The directory (relative) of the shallowest requirements.txt in the bundle."""
        found = sorted((f for f in self.files if os.path.basename(f) == "requirements.txt"),
                       key=lambda f: (f.count("/"), f))
        if not found:
            return None
        return os.path.dirname(found[0]) or "."


def find(option_value: str | None, invocation_dir: Path) -> Path | None:
    """The config file to use: the option's, else ./ptmproc_project.cfg when present."""
    if option_value:
        return Path(invocation_dir, option_value)
    default = invocation_dir / DEFAULT_NAME
    return default if default.is_file() else None


def load(path: Path) -> ProjectConfig:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"project config {path}: cannot read: {e.strerror}") from None
    data = _parse(text, path)
    if not isinstance(data, dict):
        raise ConfigError(f"project config {path}: expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(f"project config {path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    name = data.get("project_name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"project config {path}: 'project_name' is required and must be a non-empty string")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or name in (".", ".."):
        raise ConfigError(f"project config {path}: 'project_name' {name!r} may hold only letters, digits, '.', '_' and '-' "
                          "(it names a directory on the hosts)")
    root = path.resolve().parent
    patterns = data.get("test_files")
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ConfigError(f"project config {path}: 'test_files' must be a glob or a list of globs")
    files: set[str] = set()
    for pattern in patterns:
        matched = _glob(root, pattern, path)
        if not matched:
            raise ConfigError(f"project config {path}: 'test_files' pattern {pattern!r} matches no file")
        files.update(matched)
    scripts = {}
    for key in ("prepare_script", "finalize_script"):
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise ConfigError(f"project config {path}: {key!r} must be a path")
        rel = _inside(root, value, path, key)
        if not (root / rel).is_file():
            raise ConfigError(f"project config {path}: {key!r}: no such file {value!r}")
        files.add(rel)
        scripts[key] = rel
    return ProjectConfig(path=path, project_name=name, root=root, files=sorted(files), **scripts)


def _parse(text: str, path: Path):
    try:
        return json.loads(text)
    except json.JSONDecodeError as first:
        try:
            return json.loads(_drop_trailing_commas(text))
        except json.JSONDecodeError:
            raise ConfigError(f"project config {path}: invalid JSON at line {first.lineno}, column {first.colno}: "
                              f"{first.msg}") from None


def _drop_trailing_commas(text: str) -> str:
    """Removes commas that directly precede `}` or `]` (outside strings)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
            continue
        if c == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j < n and text[j] in "}]":
                i += 1
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _inside(root: Path, value: str, path: Path, key: str) -> str:
    if os.path.isabs(value):
        raise ConfigError(f"project config {path}: {key!r}: {value!r} must be relative to the config file")
    rel = os.path.normpath(value)
    if rel == ".." or rel.startswith("../"):
        raise ConfigError(f"project config {path}: {key!r}: {value!r} is outside the config file's directory")
    return rel


def _glob(root: Path, pattern: str, path: Path) -> set[str]:
    rel = _inside(root, pattern, path, "test_files")
    found: set[str] = set()
    for match in root.glob(rel) if rel != "." else [root]:
        if match.is_dir():
            for dirpath, dirnames, filenames in os.walk(match):
                dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
                for f in filenames:
                    if not f.endswith((".pyc", ".pyo")):
                        found.add(os.path.relpath(os.path.join(dirpath, f), root))
        elif match.is_file():
            found.add(os.path.relpath(match, root))
    return {f for f in found if not f.startswith("..")}
