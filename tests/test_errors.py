"""The error types are the only source of exit statuses: each one's status, the statuses
README.md's table documents, and the CLI returning exactly the raised error's status."""
import pathlib
import re
import signal

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
