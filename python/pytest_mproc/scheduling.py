"""Turns the collected items into an ordered list of units of work (lists of item indices).

- An ungrouped test is a unit of its own.
- A SINGLE_PROCESS group is one unit: its tests run serially, in one worker, ordered by their
  own priorities (collection order among equals).
- A SINGLE_NODE group is a block of single-test units placed at the group's priority (on one
  host that is all it means; multi-host keeps the block on one node).
- Top-level units and blocks are ordered by priority (lower first), then tests with no recorded
  duration first, then longest recorded duration first, then collection order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from .grouping import DEFAULT_PRIORITY, GroupTag, TestExecutionConstraint, tag_from_marker
from .history import DurationHistory


@dataclass
class _Block:
    priority: int
    first: int
    units: list[list[int]] = field(default_factory=list)
    unknown: bool = False
    duration: float = 0.0
    single_node: bool = False

    def key(self):
        return (self.priority, 0 if self.unknown else 1, -self.duration, self.first)


def test_priority(item) -> int:
    mark = item.get_closest_marker("mproc_priority")
    if mark is None:
        return DEFAULT_PRIORITY
    level = mark.args[0] if mark.args else mark.kwargs.get("level")
    if not isinstance(level, int) or isinstance(level, bool):
        raise pytest.UsageError(f"{item.nodeid}: mproc_priority needs an int, got {level!r}")
    return level


def item_group(item) -> GroupTag | None:
    mark = item.get_closest_marker("mproc_group")
    if mark is None:
        return None
    try:
        return tag_from_marker(mark)
    except (TypeError, ValueError) as e:
        raise pytest.UsageError(f"{item.nodeid}: invalid pytest_mproc group: {e}") from None


def build_units(items: list, history: DurationHistory) -> list[list[int]]:
    """The units in scheduling order (single host: a SINGLE_NODE block is just its units)."""
    return [u for b in _blocks(items, history) for u in b.units]


def build_entries(items: list, history: DurationHistory) -> list[list[list[int]]]:
    """Multi-host queue entries in scheduling order: each unit alone, except that a SINGLE_NODE
    group's units form one entry, which the coordinator hands to a single node."""
    entries = []
    for b in _blocks(items, history):
        if b.single_node:
            entries.append(b.units)
        else:
            entries.extend([u] for u in b.units)
    return entries


def _blocks(items: list, history: DurationHistory) -> list[_Block]:
    known = history.known
    blocks: list[_Block] = []
    groups: dict[str, tuple[GroupTag, str, list[tuple[int, int]]]] = {}
    for idx, item in enumerate(items):
        prio = test_priority(item)
        tag = item_group(item)
        if tag is None:
            d = known.get(item.nodeid)
            blocks.append(_Block(prio, idx, [[idx]], d is None, d or 0.0))
            continue
        seen = groups.get(tag.name)
        if seen is None:
            groups[tag.name] = (tag, item.nodeid, [(prio, idx)])
        elif seen[0] != tag:
            raise pytest.UsageError(
                f"pytest_mproc group {tag.name!r} is defined twice with different settings: "
                f"{_describe(seen[0])} at {seen[1]} and {_describe(tag)} at {item.nodeid}"
            )
        else:
            seen[2].append((prio, idx))
    for tag, _, members in groups.values():
        members.sort()
        block = _Block(tag.priority, min(i for _, i in members))
        durations = [known.get(items[i].nodeid) for _, i in members]
        block.unknown = any(d is None for d in durations)
        block.duration = sum(d or 0.0 for d in durations)
        if tag.restrict_to is TestExecutionConstraint.SINGLE_PROCESS:
            block.units = [[i for _, i in members]]
        else:
            def inner(m):
                d = known.get(items[m[1]].nodeid)
                return (m[0], 0 if d is None else 1, -(d or 0.0), m[1])

            block.units = [[i] for _, i in sorted(members, key=inner)]
            block.single_node = True
        blocks.append(block)
    blocks.sort(key=_Block.key)
    return blocks


def _describe(tag: GroupTag) -> str:
    return f"GroupTag(priority={tag.priority}, restrict_to={tag.restrict_to.name})"
