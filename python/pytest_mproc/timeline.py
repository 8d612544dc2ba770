"""What each worker did when: recorded on the main as results are replayed, for the terminal's
per-worker summary and for `--mproc-timeline PATH.html` (one self-contained page: a lane per
worker, grouped by node, a bar per test coloured by outcome, fixture set-up and worker start-up,
a per-worker table and the critical path).

Times are the workers' own wall-clock stamps (pytest's `report.start` / `report.stop`), so the
lanes of other hosts are as aligned as those hosts' clocks are."""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "rerun", "crashed")
# A worker idle for more than this share of the run (and at least IDLE_MIN_S seconds: in a
# short run start-up is most of it) gets its line in the terminal summary.
IDLE_SHARE = 0.20
IDLE_MIN_S = 1.0
# A gap this short between two of a worker's tests is the worker's own work between them
# (pytest's protocol around the phases, sending the result, taking the next test: ~0.1-0.5 ms),
# not a wait for work: it counts as busy. Waiting on an empty queue, a group held by another
# worker or a fixture being set up shows as longer gaps.
OWN_WORK_GAP_S = 0.005

_current: "Timeline | None" = None


def current() -> "Timeline | None":
    return _current


@dataclass
class Lane:
    node: str
    wid: str
    up: float | None = None  # when the worker said it was up (local workers)
    tests: list = field(default_factory=list)  # [(start, stop, outcome, nodeid, (setup, call, teardown))]

    @property
    def label(self) -> str:
        return f"{self.node}/{self.wid}" if self.node else self.wid


def outcome_of(reports) -> str:
    by = {r.when: r for r in reports}
    if any(r.outcome == "rerun" for r in reports):
        return "rerun"
    if any(r.failed and r.when != "call" for r in reports):
        return "error"
    call = by.get("call")
    if call is not None:
        if hasattr(call, "wasxfail"):
            return "xfailed" if call.skipped else "xpassed"
        return call.outcome
    setup = by.get("setup")
    if setup is not None and setup.skipped:
        return "xfailed" if hasattr(setup, "wasxfail") else "skipped"
    return "passed"


class Timeline:
    def __init__(self, config) -> None:
        self.config = config
        self.path = config.getoption("mproc_timeline", None)
        self.lanes: dict[tuple[str, str], Lane] = {}
        self.fixtures: list[tuple[str, str, float, float]] = []  # (name, kind, start, stop)
        self.t0 = time.time()

    def install(self) -> None:
        global _current
        _current = self
        from .fixture_host import FixtureHost

        FixtureHost.on_set_up = self.fixture
        self.config.pluginmanager.register(self, "mproc-timeline")

    def uninstall(self) -> None:
        """The session is over: nothing of ours keeps it (and its collected tree) alive."""
        global _current
        from .fixture_host import FixtureHost

        if _current is self:
            _current = None
        if FixtureHost.on_set_up == self.fixture:
            FixtureHost.on_set_up = None

    def begin(self) -> None:
        """The run starts (after collection): the timeline's zero."""
        self.t0 = time.time()

    def lane(self, node: str, wid: str) -> Lane:
        key = (node, wid)
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = Lane(node, wid)
        return lane

    # ---- recording ----

    def pytest_mproc_worker_started(self, config, worker_id: str, pid: int, node: str) -> None:
        lane = self.lane("", worker_id)
        if lane.up is None:
            lane.up = time.time()

    def fixture(self, name: str, kind: str, start: float, stop: float) -> None:
        self.fixtures.append((name, kind, start, stop))

    def test(self, nodeid: str, node: str, wid: str, reports) -> None:
        starts = [r.start for r in reports if getattr(r, "start", 0)]
        stops = [r.stop for r in reports if getattr(r, "stop", 0)]
        if not starts:
            return
        phases = {r.when: r.duration for r in reports}
        self.lane(node, wid).tests.append((min(starts), max(stops), outcome_of(reports), nodeid,
                                           (phases.get("setup", 0.0), phases.get("call", 0.0), phases.get("teardown", 0.0))))

    def passed(self, nodeid: str, node: str, wid: str, times: tuple) -> None:
        """`test` for a plain passed test (plain_reports.py), from its 9 phase times
        (duration, start, stop of setup, call, teardown) without looking at reports."""
        self.lane(node, wid).tests.append((times[1], times[8], "passed", nodeid, (times[0], times[3], times[6])))

    def crash(self, nodeid: str, who: str) -> None:
        """A test whose worker (or node) died: a bar from the worker's last result to now."""
        wid, _, node = who.partition(" on node ")
        if not wid.startswith("gw"):
            wid, node = "?", who.removeprefix("node ")
        lane = self.lane(node, wid)
        now = time.time()
        start = lane.tests[-1][1] if lane.tests else (lane.up or self.t0)
        lane.tests.append((start, now, "crashed", nodeid, (0.0, now - start, 0.0)))

    # ---- summary ----

    def span(self) -> tuple[float, float]:
        starts = [t[0] for lane in self.lanes.values() for t in lane.tests] + [f[2] for f in self.fixtures]
        stops = [t[1] for lane in self.lanes.values() for t in lane.tests] + [f[3] for f in self.fixtures]
        if not starts:
            return self.t0, self.t0
        return min([self.t0] + starts), max(stops)

    def workers(self) -> list[dict]:
        begin, end = self.span()
        total = max(end - begin, 1e-9)
        rows = []
        for lane in sorted(self.lanes.values(), key=lambda l: (l.node, _wid_key(l.wid))):
            if not lane.tests:
                continue
            tests = sorted(lane.tests)
            busy = sum(t[1] - t[0] for t in tests)
            between = 0.0
            for (_, stop, *_), (start, *_) in zip(tests, tests[1:]):
                gap = start - stop
                if gap > OWN_WORK_GAP_S:
                    between += gap
                elif gap > 0:
                    busy += gap
            before = tests[0][0] - begin
            after = end - tests[-1][1]
            longest = max(tests, key=lambda t: t[1] - t[0])
            idle = total - busy
            reason = max((before, "waiting to start (start-up, fixtures)"),
                         (between, "waiting for work it could take (groups, fixtures, an empty queue)"),
                         (after, "nothing left to run"))[1]
            rows.append({"worker": lane.label, "tests": len(tests), "busy": busy, "busy_pct": 100 * busy / total,
                         "idle": idle, "idle_share": idle / total, "longest": longest[3],
                         "longest_s": longest[1] - longest[0], "why_idle": reason})
        return rows

    def critical_path(self) -> list[str]:
        """What the run's wall time waited on: the worker that finished last, and how."""
        begin, end = self.span()
        lanes = [l for l in self.lanes.values() if l.tests]
        if not lanes:
            return []
        last = max(lanes, key=lambda l: max(t[1] for t in l.tests))
        tests = sorted(last.tests)
        busy = sum(t[1] - t[0] for t in tests)
        total_busy = sum(t[1] - t[0] for l in lanes for t in l.tests)
        lines = [f"the run ({end - begin:.2f} s) ended when {last.label} finished {tests[-1][3]}"
                 f" ({tests[-1][1] - tests[-1][0]:.2f} s)"]
        lines.append(f"{last.label} started its first test {tests[0][0] - begin:.2f} s into the run and was busy "
                     f"{busy:.2f} s of its {tests[-1][1] - begin:.2f} s")
        longest = sorted(tests, key=lambda t: t[0] - t[1])[:3]
        lines.append("its longest tests: " + ", ".join(f"{t[3]} ({t[1] - t[0]:.2f} s)" for t in longest))
        if self.fixtures:
            f = max(self.fixtures, key=lambda f: f[3] - f[2])
            lines.append(f"slowest {f[1]} fixture: {f[0]} ({f[3] - f[2]:.2f} s)")
        lines.append(f"with the same work spread evenly over {len(lanes)} workers the tests would take "
                     f"{total_busy / len(lanes):.2f} s")
        return lines

    def terminal_lines(self, verbose: bool) -> list[str]:
        out = []
        for w in self.workers():
            idle = w["idle_share"] > IDLE_SHARE and w["idle"] >= IDLE_MIN_S
            if not verbose and not idle:
                continue
            line = (f"{w['worker']}: {w['tests']} tests, busy {w['busy_pct']:.0f}%, slowest {w['longest']} "
                    f"({w['longest_s']:.2f} s)")
            if idle:
                line += f"; idle {100 * w['idle_share']:.0f}%: mostly {w['why_idle']}"
            out.append(line)
        return out

    # ---- the HTML page ----

    def write(self) -> str | None:
        if not self.path:
            return None
        begin, end = self.span()
        lanes = sorted(self.lanes.values(), key=lambda l: (l.node, _wid_key(l.wid)))
        names: list[str] = []
        tests, ups = [], []
        for i, lane in enumerate(lanes):
            if lane.up is not None:
                ups.append([i, round(lane.up - begin, 4)])
            for start, stop, outcome, nodeid, phases in sorted(lane.tests):
                names.append(nodeid)
                tests.append([i, round(start - begin, 4), round(stop - start, 4), OUTCOMES.index(outcome),
                              len(names) - 1] + [round(p, 4) for p in phases])
        data = {
            "lanes": [[lane.label, lane.node] for lane in lanes],
            "tests": tests, "names": names, "outcomes": OUTCOMES, "ups": ups,
            "fixtures": [[n, k, round(a - begin, 4), round(b - a, 4)] for n, k, a, b in self.fixtures],
            "span": round(end - begin, 4),
            "workers": self.workers(),
            "critical": self.critical_path(),
            "title": f"pytest-mproc timeline: {len(tests)} tests, {len(lanes)} workers, {end - begin:.2f} s",
        }
        text = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
        page = _PAGE.replace("@TITLE@", html.escape(data["title"])).replace("@DATA@", text)
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page)
        return str(path)


def _wid_key(wid: str):
    return (0, int(wid[2:])) if wid.startswith("gw") and wid[2:].isdigit() else (1, wid)


_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>@TITLE@</title>
<style>
body{font:13px system-ui,sans-serif;margin:16px;color:#222}
#wrap{position:relative;border:1px solid #ccc;overflow:hidden}
canvas{display:block;cursor:crosshair}
#tip{position:absolute;pointer-events:none;background:#fffff0;border:1px solid #999;padding:4px 6px;display:none;white-space:pre;font-size:12px}
#detail{margin:8px 0;padding:6px;background:#f4f4f4;white-space:pre-wrap;min-height:1.4em}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child,th:first-child,td.l{text-align:left}
.legend span{display:inline-block;margin-right:12px}.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
</style></head>
<body data-bars="0" data-errors="0">
<h1 style="font-size:18px">@TITLE@</h1>
<p>Wheel: zoom; drag: pan; double-click: reset. Hover or click a bar for details.</p>
<div class="legend" id="legend"></div>
<div id="wrap"><canvas id="c"></canvas><div id="tip"></div></div>
<div id="detail">Click a bar for its details.</div>
<h2 style="font-size:15px">Workers</h2>
<table id="workers"><thead><tr><th>worker</th><th>tests</th><th>busy s</th><th>busy %</th><th>idle s</th><th>longest test</th><th>s</th><th>mostly idle because</th></tr></thead><tbody></tbody></table>
<h2 style="font-size:15px">Critical path</h2><ul id="critical"></ul>
<script id="data" type="application/json">@DATA@</script>
<script>
(function () {
  "use strict";
  window.addEventListener("error", function () { document.body.dataset.errors = String(+document.body.dataset.errors + 1); });
  var D = JSON.parse(document.getElementById("data").textContent);
  var COLORS = {passed: "#4caf50", failed: "#e53935", error: "#8e24aa", skipped: "#fbc02d", xfailed: "#90a4ae",
                xpassed: "#ff9800", rerun: "#26c6da", crashed: "#000000"};
  var ROW = 18, LEFT = 170, TOP = 22, FIX_ROW = D.fixtures.length ? ROW : 0;
  var canvas = document.getElementById("c"), ctx = canvas.getContext("2d");
  var tip = document.getElementById("tip"), wrap = document.getElementById("wrap");
  var span = Math.max(D.span, 1e-3), view = [0, span];
  var byLane = D.lanes.map(function () { return []; });
  D.tests.forEach(function (t) { byLane[t[0]].push(t); });
  var legend = document.getElementById("legend");
  D.outcomes.forEach(function (o) {
    var n = D.tests.filter(function (t) { return D.outcomes[t[3]] === o; }).length;
    document.body.dataset[o] = String(n);
    if (n) { legend.innerHTML += '<span><i style="background:' + COLORS[o] + '"></i>' + o + " " + n + "</span>"; }
  });
  legend.innerHTML += '<span><i style="background:#1e88e5"></i>fixture set-up</span><span><i style="background:#bbb"></i>worker start-up</span>';
  function size() {
    canvas.width = Math.max(wrap.clientWidth, 400);
    canvas.height = TOP + FIX_ROW + D.lanes.length * ROW + 4;
  }
  function x(t) { return LEFT + (t - view[0]) / (view[1] - view[0]) * (canvas.width - LEFT - 4); }
  function draw() {
    var drawn = 0, w = canvas.width;
    ctx.clearRect(0, 0, w, canvas.height);
    ctx.fillStyle = "#222"; ctx.font = "11px sans-serif";
    var step = Math.pow(10, Math.floor(Math.log10((view[1] - view[0]) / 5)));
    for (var t = Math.ceil(view[0] / step) * step; t <= view[1]; t += step) {
      var px = x(t); ctx.fillRect(px, TOP - 4, 1, 4); ctx.fillText(t.toFixed(step < 1 ? 2 : 0) + " s", px + 2, TOP - 8);
    }
    if (FIX_ROW) {
      ctx.fillText("fixtures (set-up)", 4, TOP + 13);
      D.fixtures.forEach(function (f) {
        ctx.fillStyle = "#1e88e5"; ctx.fillRect(x(f[2]), TOP + 3, Math.max(x(f[2] + f[3]) - x(f[2]), 1), ROW - 6);
      });
    }
    var group = null;
    D.lanes.forEach(function (lane, i) {
      var y = TOP + FIX_ROW + i * ROW;
      if (lane[1] !== group) { group = lane[1]; ctx.fillStyle = "#ddd"; ctx.fillRect(0, y, w, 1); }
      ctx.fillStyle = i % 2 ? "#fafafa" : "#f0f0f0"; ctx.fillRect(LEFT, y + 1, w - LEFT, ROW - 1);
      ctx.fillStyle = "#222"; ctx.fillText(lane[0], 4, y + 13);
    });
    D.ups.forEach(function (u) {
      var y = TOP + FIX_ROW + u[0] * ROW, first = byLane[u[0]].length ? byLane[u[0]][0][1] : u[1];
      ctx.fillStyle = "#bbb"; ctx.fillRect(x(Math.min(u[1], first)), y + 6, Math.max(x(first) - x(Math.min(u[1], first)), 1), ROW - 12);
    });
    byLane.forEach(function (tests, i) {
      var y = TOP + FIX_ROW + i * ROW + 2;
      tests.forEach(function (t) {
        var a = x(t[1]), b = x(t[1] + t[2]);
        if (b < LEFT || a > w) { return; }
        ctx.fillStyle = COLORS[D.outcomes[t[3]]];
        ctx.fillRect(Math.max(a, LEFT), y, Math.max(b - Math.max(a, LEFT), 1), ROW - 4);
        drawn += 1;
      });
    });
    return drawn;
  }
  function find(ev) {
    var r = canvas.getBoundingClientRect(), mx = ev.clientX - r.left, my = ev.clientY - r.top;
    var lane = Math.floor((my - TOP - FIX_ROW) / ROW);
    if (lane < 0 || lane >= D.lanes.length || mx < LEFT) { return null; }
    var t = view[0] + (mx - LEFT) / (canvas.width - LEFT - 4) * (view[1] - view[0]);
    var tests = byLane[lane], lo = 0, hi = tests.length - 1, best = null, slack = 3 * (view[1] - view[0]) / canvas.width;
    while (lo <= hi) { var mid = (lo + hi) >> 1; if (tests[mid][1] <= t + slack) { best = mid; lo = mid + 1; } else { hi = mid - 1; } }
    if (best === null) { return null; }
    var hit = tests[best];
    return t <= hit[1] + hit[2] + slack ? hit : null;
  }
  function describe(t) {
    return D.names[t[4]] + "\n" + D.outcomes[t[3]] + " on " + D.lanes[t[0]][0] + "\nstart " + t[1].toFixed(3) +
      " s, " + t[2].toFixed(3) + " s in all (setup " + t[5].toFixed(3) + ", call " + t[6].toFixed(3) + ", teardown " + t[7].toFixed(3) + ")";
  }
  var drag = null;
  canvas.addEventListener("mousemove", function (ev) {
    if (drag) {
      var dt = (drag.x - ev.clientX) / (canvas.width - LEFT) * (drag.v[1] - drag.v[0]);
      view = [drag.v[0] + dt, drag.v[1] + dt]; draw(); return;
    }
    var hit = find(ev), r = wrap.getBoundingClientRect();
    if (!hit) { tip.style.display = "none"; return; }
    tip.textContent = describe(hit); tip.style.display = "block";
    tip.style.left = Math.min(ev.clientX - r.left + 12, r.width - 320) + "px"; tip.style.top = (ev.clientY - r.top + 12) + "px";
  });
  canvas.addEventListener("mousedown", function (ev) { drag = {x: ev.clientX, v: view.slice()}; });
  window.addEventListener("mouseup", function () { drag = null; });
  canvas.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  canvas.addEventListener("click", function (ev) { var hit = find(ev); if (hit) { document.getElementById("detail").textContent = describe(hit); } });
  canvas.addEventListener("dblclick", function () { view = [0, span]; draw(); });
  canvas.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var r = canvas.getBoundingClientRect(), f = ev.deltaY > 0 ? 1.25 : 0.8;
    var at = view[0] + (ev.clientX - r.left - LEFT) / (canvas.width - LEFT) * (view[1] - view[0]);
    view = [at - (at - view[0]) * f, at + (view[1] - at) * f]; draw();
  }, {passive: false});
  window.addEventListener("resize", function () { size(); draw(); });
  var body = document.querySelector("#workers tbody");
  D.workers.forEach(function (w) {
    var tr = document.createElement("tr");
    [w.worker, w.tests, w.busy.toFixed(2), w.busy_pct.toFixed(0), w.idle.toFixed(2), w.longest, w.longest_s.toFixed(2),
     w.idle_share > 0.2 ? w.why_idle : ""].forEach(function (v, i) {
      var td = document.createElement("td"); td.textContent = v; if (i === 5 || i === 7) { td.className = "l"; } tr.appendChild(td);
    });
    body.appendChild(tr);
  });
  var crit = document.getElementById("critical");
  D.critical.forEach(function (line) { var li = document.createElement("li"); li.textContent = line; crit.appendChild(li); });
  size();
  document.body.dataset.bars = String(draw());
})();
</script>
</body></html>
"""
