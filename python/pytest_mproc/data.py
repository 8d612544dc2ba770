"""The original documentation's module for group tags: `pytest_mproc.data.GroupTag` and
`pytest_mproc.data.TestExecutionConstraint` (the same classes as `pytest_mproc.GroupTag`...)."""

from .grouping import DEFAULT_PRIORITY, GroupTag, TestExecutionConstraint

__all__ = ["DEFAULT_PRIORITY", "GroupTag", "TestExecutionConstraint"]
