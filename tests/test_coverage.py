"""pytest-cov under --cores reports the same covered lines as the serial run: each forked worker
saves its own data file and the main combines them."""

import re

import pytest

pytest.importorskip("pytest_cov")


def _missing(result) -> str:
    m = re.search(r"^covpkg/__init__\.py\s+\d+\s+\d+\s+\d+%\s*(.*)$", result.stdout.str(), re.M)
    assert m, result.stdout.str()
    return m.group(0)


def test_cov_lines_match_serial(run, pytester):
    pytester.mkpydir("covpkg")
    (pytester.path / "covpkg" / "__init__.py").write_text(
        "def a(x):\n    if x > 0:\n        return 1\n    return 2\n\n"
        "def b(x):\n    for i in range(x):\n        x += i\n    return x\n\n"
        "def never():\n    return 0\n"
    )
    pytester.makepyfile(
        "import covpkg\n"
        "def test_a1(): assert covpkg.a(1) == 1\n"
        "def test_a2(): assert covpkg.a(-1) == 2\n"
        "def test_b(): assert covpkg.b(3) == 6\n"
    )
    serial = run("--cov=covpkg", "--cov-report=term-missing")
    parallel = run("--cov=covpkg", "--cov-report=term-missing", "--cores", "2")
    parallel.assert_outcomes(passed=3)
    assert _missing(parallel) == _missing(serial)
    # Lines only tests execute are covered, so worker data really was combined.
    assert _missing(parallel).endswith("12")
