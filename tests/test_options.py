"""Option handling: --cores values, --disable-mproc, conflicts; bad input is a usage error."""

import pytest


@pytest.mark.parametrize("value", ["abc", "0", "-1", "auto*x", "auto/0", "2.5", ""])
def test_bad_cores_value_is_usage_error(run, pytester, value):
    pytester.makepyfile("def test_a(): pass")
    result = run(f"--cores={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "--cores" in err
    assert "Traceback" not in err and "Traceback" not in result.stdout.str()


@pytest.mark.parametrize("value", ["1", "2", "auto", "auto*2", "auto/2"])
def test_good_cores_values_run_the_suite(run, pytester, value):
    pytester.makepyfile("def test_a(): pass\ndef test_b(): pass")
    result = run(f"--cores={value}")
    assert result.ret == 0
    result.assert_outcomes(passed=2)


def test_cores_with_xdist_n_is_usage_error(run, pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile("def test_a(): pass")
    result = run("--cores", "2", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "drop one of them" in result.stderr.str()


def test_pdb_with_cores_is_usage_error(run, pytester):
    pytester.makepyfile("def test_a(): pass")
    result = run("--cores", "2", "--pdb")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--pdb" in result.stderr.str()


def test_disable_mproc_true_runs_serially(run, pytester, ledger):
    pytester.makepyfile("import os\ndef test_a(): assert 'PTMPROC_WORKER' not in os.environ\ndef test_b(): pass")
    result = run("--cores", "2", "--disable-mproc", "True")
    result.assert_outcomes(passed=2)
    # Serial: both tests ran in the pytest process itself, which is the only pid seen.
    assert len(ledger.pids()) == 1


def test_disable_mproc_false_keeps_parallel(run, pytester):
    pytester.makepyfile("import os\ndef test_a(): assert os.environ.get('PTMPROC_WORKER') == '1'")
    result = run("--cores", "2", "--disable-mproc", "False")
    result.assert_outcomes(passed=1)


def test_disable_mproc_bad_value(run, pytester):
    pytester.makepyfile("def test_a(): pass")
    result = run("--disable-mproc", "maybe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--disable-mproc" in result.stderr.str()


def test_inert_without_cores(run, pytester, ledger):
    pytester.makepyfile("import os\ndef test_a(): assert 'PTMPROC_WORKER' not in os.environ")
    result = run()
    result.assert_outcomes(passed=1)


def test_options_listed_in_help(run, pytester):
    result = run("--help")
    out = result.stdout.str()
    assert "pytest-mproc" in out and "--cores" in out and "--disable-mproc" in out


def test_verbose_env_reports_workers(run, pytester, monkeypatch):
    monkeypatch.setenv("PTMPROC_VERBOSE", "1")
    pytester.makepyfile("def test_a(): pass")
    result = run("--cores", "2")
    err = result.stderr.str()
    assert "fork server pid" in err and "forked worker gw0" in err and "worker gw0 up" in err
