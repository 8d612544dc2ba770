"""User-facing grouping and priority API: decorators that put pytest markers on tests/classes.

`@pytest_mproc.group(...)` is `@pytest.mark.mproc_group(...)`, `@pytest_mproc.priority(n)` is
`@pytest.mark.mproc_priority(n)`; both forms work and mean the same."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import pytest

DEFAULT_PRIORITY = 10


class TestExecutionConstraint(enum.Enum):
    """Where the tests of a group may run."""

    __test__ = False  # a name starting with "Test": keep pytest from collecting it

    #: all tests of the group run serially in one worker process (the default)
    SINGLE_PROCESS = "single_process"
    #: all tests of the group run on one node, spread over that node's workers
    SINGLE_NODE = "single_node"


@dataclass(frozen=True)
class GroupTag:
    """A named group with its own priority (among top-level units) and constraint."""

    name: str
    priority: int = DEFAULT_PRIORITY
    restrict_to: TestExecutionConstraint = TestExecutionConstraint.SINGLE_PROCESS

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"GroupTag name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.priority, int) or isinstance(self.priority, bool):
            raise TypeError(f"GroupTag priority must be an int, got {self.priority!r}")
        if not isinstance(self.restrict_to, TestExecutionConstraint):
            raise TypeError(f"GroupTag restrict_to must be a TestExecutionConstraint, got {self.restrict_to!r}")


def group(tag, priority: int | None = None, restrict_to: TestExecutionConstraint | None = None):
    """Decorator: put a test function, or every test method of a class, into group `tag`: a
    name (optionally with the group's `priority` and `restrict_to`) or a GroupTag."""
    if isinstance(tag, GroupTag):
        if priority is not None or restrict_to is not None:
            raise TypeError("pytest_mproc.group takes a GroupTag or a name with priority/restrict_to, not both")
        return pytest.mark.mproc_group(tag)
    if not isinstance(tag, str):
        raise TypeError(f"pytest_mproc.group takes a group name or a GroupTag, got {tag!r}")
    if priority is None and restrict_to is None:
        return pytest.mark.mproc_group(tag)
    return pytest.mark.mproc_group(GroupTag(tag, DEFAULT_PRIORITY if priority is None else priority,
                                            restrict_to or TestExecutionConstraint.SINGLE_PROCESS))


def priority(level: int):
    """Decorator: schedule a test (or every method of a class without its own priority) at
    `level`; lower values run first; the default is DEFAULT_PRIORITY."""
    if not isinstance(level, int) or isinstance(level, bool):
        raise TypeError(f"pytest_mproc.priority takes an int, got {level!r}")
    return pytest.mark.mproc_priority(level)


def tag_from_marker(mark) -> GroupTag:
    """The GroupTag a `mproc_group` marker stands for (name, GroupTag, or name + keywords)."""
    if mark.args and isinstance(mark.args[0], GroupTag):
        if len(mark.args) > 1 or mark.kwargs:
            raise ValueError("mproc_group takes either a GroupTag or a name with keywords, not both")
        return mark.args[0]
    name = mark.args[0] if mark.args else mark.kwargs.get("name")
    kwargs = {k: v for k, v in mark.kwargs.items() if k != "name"}
    if len(mark.args) > 1:
        raise ValueError("mproc_group takes one positional argument (the group name)")
    return GroupTag(name, **kwargs)
