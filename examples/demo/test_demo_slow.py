"""Tests that wait (I/O, sleeps): these gain the most from more workers."""

import time

import pytest


@pytest.mark.parametrize("n", range(24))
def test_io_bound(n):
    time.sleep(0.05)
    assert n >= 0
