"""pytest-mproc: run a pytest suite in parallel on all cores of one machine and across machines.

Public API (names as in the original pytest_mproc documentation)::

    import pytest_mproc
    from pytest_mproc import GroupTag, TestExecutionConstraint, DEFAULT_PRIORITY

    @pytest_mproc.group("db")                      # one unit of work, run serially in one worker
    @pytest_mproc.priority(DEFAULT_PRIORITY - 2)   # lower value is scheduled first
    def test_something(): ...
"""

from . import data, fixtures, orchestration
from .auth import set_user_defined_auth_token
from .grouping import DEFAULT_PRIORITY, GroupTag, TestExecutionConstraint, group, priority
from .ports import set_user_defined_port_alloc
from .settings import Settings

__all__ = [
    "DEFAULT_PRIORITY",
    "GroupTag",
    "Settings",
    "TestExecutionConstraint",
    "data",
    "fixtures",
    "group",
    "orchestration",
    "priority",
    "set_user_defined_auth_token",
    "set_user_defined_port_alloc",
]
