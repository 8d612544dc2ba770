"""The main's pytest arguments as the hosts of a fleet run get them: everything that shapes
what runs and how a test behaves (`-k`, `-m`, paths, `-p`, `-o`, `-W`, `-s`, the project's own
options) is passed on; what only the main does (reporting, caches, stopping, where to serve,
which hosts) is not. Paths are rewritten relative to the project directory, which is where the
hosts run."""

from __future__ import annotations

import os
from pathlib import Path

# Options of the main alone (their values are dropped with them).
MAIN_ONLY = {
    # pytest-mproc's own, for the main
    "--as-main", "--as-worker", "--remote-worker", "--project_structure", "--project-structure",
    "--cores", "-C", "--num_cores", "--num-cores", "--mproc-node-wait", "--mproc-ssh-config",
    "--mproc-selection", "--mproc-node-name", "--mproc-no-history",
    # reporting and result files: the main reports every result
    "--junitxml", "--junit-xml", "--junitprefix", "--junit-prefix", "--resultlog", "--result-log",
    "--report-log", "--html", "--self-contained-html", "--durations", "--durations-min",
    "--pastebin", "--debug", "--color", "--code-highlight", "-r", "--show-capture",
    "--no-header", "--no-summary",
    # selection only the main can compute (its cache), and stopping: the main runs exactly
    # its selection on the hosts and decides when to stop
    "--lf", "--last-failed", "--ff", "--failed-first", "--nf", "--new-first", "--lfnf",
    "--last-failed-no-failures", "--sw", "--stepwise", "--sw-skip", "--stepwise-skip",
    "--sw-reset", "--stepwise-reset", "--cache-clear", "--cache-show",
    "-x", "--exitfirst", "--maxfail",
    # runs that are not test runs / paths of the main's machine
    "--co", "--collect-only", "--collectonly", "--setup-plan", "--fixtures", "--funcargs",
    "--fixtures-per-test", "--markers", "--basetemp", "--rootdir",
}
# Options whose value is a path of the main's machine (rewritten when inside the project).
PATH_VALUED = {"-c", "--config-file", "--confcutdir", "--ignore", "--ignore-glob", "--deselect"}


class ForwardError(ValueError):
    pass


def forward(config, project_root: Path) -> list[str]:
    """The arguments for `pytest` on the hosts (run in the project directory)."""
    # argparse, for which option takes a value (pytest >= 9: .optparser; 8: ._getparser()).
    parser = getattr(config._parser, "optparser", None) or config._parser._getparser()
    actions = parser._option_string_actions
    invocation = Path(config.invocation_params.dir)
    args = list(config.invocation_params.args)
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            out.append(arg)
            out += [_path(a, invocation, project_root) for a in args[i:]]
            break
        if not arg.startswith("-") or arg == "-":
            out.append(_path(arg, invocation, project_root))
            continue
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            action = actions.get(name)
            takes = action is not None and action.nargs != 0
            if takes and not eq and i < len(args):
                value, i = args[i], i + 1
            if name in MAIN_ONLY:
                continue
            if name in PATH_VALUED and takes:
                value = _path(value, invocation, project_root)
            out += [name, value] if takes else [arg]
            continue
        # Short options: -k EXPR, -kEXPR, -vvs (flags run together).
        j = 1
        while j < len(arg):
            flag = "-" + arg[j]
            action = actions.get(flag)
            if action is not None and action.nargs != 0:
                value = arg[j + 1:]
                if not value and i < len(args):
                    value, i = args[i], i + 1
                if flag not in MAIN_ONLY:
                    if flag in PATH_VALUED:
                        value = _path(value, invocation, project_root)
                    out += [flag, value]
                break
            if flag not in MAIN_ONLY:
                out.append(flag)
            j += 1
    return out


def _path(arg: str, invocation: Path, root: Path) -> str:
    """A path (or node id `path::name`) given to the main, relative to the project directory."""
    path, sep, rest = arg.partition("::")
    full = Path(os.path.normpath(invocation / path))
    if not full.exists():
        return arg  # not a path (e.g. a -k expression after --): passed as given
    try:
        rel = full.relative_to(root)
    except ValueError:
        raise ForwardError(f"{arg!r} is outside the project directory {root} (the bundle): "
                           "the hosts cannot run it") from None
    return (str(rel) if str(rel) != "." else ".") + sep + rest


def rootdir_arg(config, project_root: Path) -> list[str]:
    """`--rootdir` for the hosts, so their node ids are the main's."""
    rootdir = Path(config.rootpath)
    try:
        rel = rootdir.relative_to(project_root)
    except ValueError:
        raise ForwardError(f"pytest's rootdir {rootdir} is outside the project directory {project_root}: "
                           "put the project config at or above the rootdir") from None
    return [f"--rootdir={rel}"]
