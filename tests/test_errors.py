"""The error types are the only source of exit statuses: each one's status, the statuses
README.md's table documents, and the CLI returning exactly the raised error's status."""
import ast
import pathlib
import re
import signal
import subprocess
import sys

import pytest

from xor_gpu import cli, errors
from xor_gpu.errors import CheckFailed, ConfigError, DeviceError, Diverged, Interrupted, TimedOut, XorGpuError

README = pathlib.Path(__file__).parent.parent / "README.md"


def _documented_statuses():
    """The numbers of README.md's exit-status table."""
    table = README.read_text().split("### Exit status", 1)[1].split("\n\n", 2)[1]
    return {int(n) for line in table.splitlines() for n in re.findall(r"^\| (\d+)", line)} | {
        int(n) for line in table.splitlines() for n in re.findall(r"^\| \d+ / (\d+)", line)}


@pytest.mark.parametrize("error, status", [
    (ConfigError, 2), (DeviceError, 3), (Diverged, 4), (CheckFailed, 5), (TimedOut, 5)])
def test_each_error_carries_its_documented_exit_status(error, status):
    assert error("x").exit_status == status and status in _documented_statuses()
    assert issubclass(error, XorGpuError)


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interruption_exits_128_plus_the_signal(signum, status):
    exc = Interrupted(signum)
    assert exc.exit_status == status and status in _documented_statuses()
    assert str(exc) == f"interrupted by {signal.Signals(signum).name}" and exc.signal_name in str(exc)
    assert errors.EXIT_INTERRUPTED == Interrupted(signal.SIGINT).exit_status


@pytest.mark.parametrize("error", [ConfigError("bad"), DeviceError("gone"), CheckFailed("off"), Interrupted(15)])
def test_the_cli_returns_the_raised_errors_status_with_one_line(monkeypatch, capsys, error):
    def fail(args):
        raise error
    monkeypatch.setitem(cli.__dict__, "cmd_doctor", fail)
    assert cli.main(["doctor"]) == error.exit_status
    assert capsys.readouterr().err == f"xor-gpu: error: {error}\n"


ROOT = README.parent
EXITING_FUNCTIONS = re.compile(r"main$|^cmd_|^child_main$")


def _literal_exit_numbers(path):
    """(line, code) of exit numbers written as literals: sys.exit(N), exit_status=N and
    `return N` in a function whose result is a process's exit status."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef) and EXITING_FUNCTIONS.search(fn.name):
            found += [n for n in ast.walk(fn) if isinstance(n, ast.Return) and _is_int(n.value)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("sys.exit", "exit") and node.args:
            found += [node] if _is_int(node.args[0]) else []
        if isinstance(node, ast.keyword) and node.arg == "exit_status" and _is_int(node.value):
            found.append(node.value)
        if isinstance(node, ast.Assign) and _is_int(node.value) and any(
                ast.unparse(t).endswith("exit_status") for t in node.targets):
            found.append(node)
    return [(n.lineno, ast.unparse(n)) for n in found]


def _is_int(node):
    if isinstance(node, ast.IfExp):  # `return 0 if ok else 1`
        return _is_int(node.body) or _is_int(node.orelse)
    return isinstance(node, ast.Constant) and type(node.value) is int


def test_no_exit_number_is_written_outside_the_error_types():
    sources = sorted((ROOT / "xor_gpu").rglob("*.py")) + [ROOT / "bundle" / "build.py"]
    found = {str(p.relative_to(ROOT)): _literal_exit_numbers(p) for p in sources if p.name != "errors.py"}
    assert {path: lines for path, lines in found.items() if lines} == {}
    # The check itself sees a literal where one is written.
    assert _literal_exit_numbers(ROOT / "xor_gpu" / "errors.py") == [(12, "exit_status = 1"), (18, "exit_status = 2"),
                                                                      (24, "exit_status = 3"), (30, "exit_status = 4"),
                                                                      (36, "exit_status = 5")]


def test_the_bundle_builder_exits_with_the_packages_statuses_without_it_installed(tmp_path):
    """bundle/build.py runs on any python3 without the package installed (-S: no site-packages),
    reading the statuses from the working tree: bad input is exit 2, one line, nothing written."""
    proc = subprocess.run([sys.executable, "-I", "-S", str(ROOT / "bundle" / "build.py"), "--out", tmp_path / "b.zip"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == ConfigError.exit_status
    assert proc.stderr == f"build.py: error: --out must name a .tar.gz file, got {tmp_path / 'b.zip'}\n"
    assert not list(tmp_path.iterdir())
