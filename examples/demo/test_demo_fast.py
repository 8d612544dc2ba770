"""Many small tests: the kind of suite where xdist is slower than plain pytest."""

import pytest


@pytest.mark.parametrize("n", range(300))
def test_arithmetic(n):
    assert (n * 3) // 3 == n


@pytest.mark.parametrize("word", ["alpha", "beta", "gamma", "delta"] * 25)
def test_strings(word, warm_cache):
    assert warm_cache["ready"] and word.upper().lower() == word
