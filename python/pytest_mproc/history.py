"""Test duration history in pytest's cache (`.pytest_cache`), so the next run can schedule the
longest work first. Absent with `-p no:cacheprovider` or `--mproc-no-history`."""

from __future__ import annotations

CACHE_KEY = "pytest_mproc/durations"


class DurationHistory:
    def __init__(self, config) -> None:
        self._cache = getattr(config, "cache", None)
        self.enabled = self._cache is not None and not config.getoption("mproc_no_history", False)
        self.known: dict[str, float] = {}
        if self.enabled:
            data = self._cache.get(CACHE_KEY, {})
            if isinstance(data, dict):
                self.known = {k: float(v) for k, v in data.items() if isinstance(v, (int, float))}
        self._seen: dict[str, float] = {}

    def record(self, nodeid: str, reports) -> None:
        """A test's reports were replayed (replay.Outcomes, once per test): its duration is the
        sum of theirs."""
        total = self._seen.get(nodeid, 0.0)
        for report in reports:
            total += float(report.duration or 0.0)
        self._seen[nodeid] = total

    def save(self) -> None:
        if self.enabled and self._seen:
            merged = dict(self.known)
            merged.update(self._seen)
            self._cache.set(CACHE_KEY, merged)
