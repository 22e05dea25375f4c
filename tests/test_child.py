"""Child processes (xor_gpu.child), for real: a training's report comes back, a device that
cannot be used comes back as its error (from the child's error report, not its stderr), a
child that runs out of time is stopped, not left behind; and every child of the package, the
training and compile-only's alike, answers the one way."""
import ast
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from xorlib import without_cuda_gpu
from xor_gpu import child
from xor_gpu.cli import build_parser
from xor_gpu.config import TrainConfig
from xor_gpu.errors import EXIT_OK, DeviceError, TimedOut
from xor_gpu.results.compile_only import CompiledGraph
from xor_gpu.results.train_report import TrainReport

PACKAGE = pathlib.Path(child.__file__).parent


def test_a_run_returns_its_train_report():
    run = child.train(TrainConfig(steps=2000, lr=0.3))
    assert run.ok and run.exit_status == EXIT_OK and run.error == ""
    assert isinstance(run.report, TrainReport) and run.report.schema == "xor_gpu.train/1" and run.report.steps == 2000
    assert run.report.converged is True and run.seconds > 0


def test_train_args_give_the_child_the_same_config():
    """Every field, as `xor-gpu train` parses it back; --seeds instead of --seed for a sweep."""
    config = TrainConfig(device="opencl0:0", hidden=4, lr=0.1 + 0.2, steps=7, seed=3, steps_per_call=1)
    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    assert TrainConfig.from_args(train.parse_args(child.train_args(config))) == config
    sweep = train.parse_args(child.train_args(config, seeds=[1, 5]))
    assert sweep.seeds == "1,5" and TrainConfig.from_args(sweep) == config.replace(seed=TrainConfig().seed)
    # A field left to the child's default (steps per call: the device's) is not passed at all.
    assert "--steps-per-call" not in child.train_args(config.replace(steps_per_call=None))


@without_cuda_gpu
def test_an_unusable_device_comes_back_as_its_error():
    run = child.train(TrainConfig(device="cuda", steps=10))
    assert not run.ok and run.exit_status == DeviceError.exit_status and run.report is None
    assert run.error.startswith("device cuda requested but Theano could not initialise it")
    assert "\n" not in run.error and "xor-gpu: error:" in run.stderr


def _children():
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children", encoding="ascii") as f:
        return set(f.read().split())


def test_a_child_out_of_time_is_stopped_and_reported():
    before = _children()  # e.g. the heartbeat of a compile lock this test process held (compile_lock.py)
    run = child.train(TrainConfig(steps=10**9), timeout=3)
    assert run.exit_status == TimedOut.exit_status and run.error == "training on cpu did not finish in 3 s"
    assert _children() <= before, "the stopped child is still running"


def test_a_child_killed_by_a_signal_comes_back_naming_it():
    """As the out-of-memory killer, or a kernel family the CPU lacks (SIGILL), ends a training:
    no error report of its own, and the signal by its name, never a bare exit code."""
    with child.start(TrainConfig(steps=10**9)) as training:
        time.sleep(1)
        training._proc.kill()
        run = training.result()
    assert run.exit_status == -signal.SIGKILL
    assert run.error == "the training on cpu was killed by SIGKILL (Killed)"
    assert child.died(-signal.SIGILL, "") == "the child process was killed by SIGILL (Illegal instruction)"
    assert child.died(-signal.SIGBUS, "last words\n", "the compile-only child") == (
        "the compile-only child was killed by SIGBUS (Bus error): last words")
    assert child.died(1, "") == "the child process died (exit 1)"


def test_the_error_report_is_written_only_where_a_parent_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(child.ERROR_ENV, raising=False)
    child.write_error(ValueError("not asked"), 2)
    assert os.listdir(tmp_path) == []
    path = tmp_path / "error.json"
    monkeypatch.setenv(child.ERROR_ENV, str(path))
    child.write_error(DeviceError("no\n  device"), 3)
    assert json.loads(path.read_text()) == {"schema": "xor_gpu.error/1", "exit_status": 3, "type": "DeviceError",
                                            "message": "no device"}


@without_cuda_gpu
def test_compile_onlys_child_answers_as_a_training_does():
    """The compiling child of `doctor --compile-only` (here without its stand-in driver, so that
    Theano cannot open a cuda context) leaves its error as a training does: read from its error
    report (xor_gpu.error/1), its type and exit status the error's own."""
    with child.Process("compile-only child") as proc:
        run = proc.start(sys.executable, "xor_gpu.compile_child", [proc.report]).answer(CompiledGraph.from_dict)
    assert not run.ok and run.exit_status == DeviceError.exit_status and run.report is None
    assert run.error_type == "DeviceError" and run.error.startswith("device cuda requested but Theano could not")
    assert "\n" not in run.error


def _child_starts(tree):
    """(line, text) of each way of starting a process of the package: an argv naming `-m` (a
    module run as a program), and each subprocess.Popen."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value == "-m":
            yield node.lineno, "-m"
        elif isinstance(node, ast.Attribute) and node.attr == "Popen":
            yield node.lineno, ast.unparse(node)


def test_every_child_of_the_package_is_started_and_read_by_child_py():
    """One protocol: a child of the package is started by child.Process (its report and error
    files, its reader); reexec.py's and launch.py's `-m` replace the process (exec: no child),
    and the compile lock's heartbeat (a Popen) answers nothing, it only keeps a lock fresh."""
    found = {str(path.relative_to(PACKAGE)): {text for _, text in _child_starts(ast.parse(path.read_text()))}
             for path in sorted(PACKAGE.rglob("*.py"))}
    assert {path: starts for path, starts in found.items() if starts} == {
        "child.py": {"-m", "subprocess.Popen"}, "reexec.py": {"-m"}, "launch.py": {"-m"},
        "compile_lock.py": {"subprocess.Popen"}}


def test_a_signal_while_the_child_starts_stops_the_child_too(monkeypatch):
    """A signal whose handler raises, arriving between fork and exec (here: just as Popen
    returns), waits until the child is known, then stops the parent and the child with it."""
    class Stop(Exception):
        pass

    def stop(signum, frame):
        raise Stop
    started, popen = [], subprocess.Popen

    def popen_then_signal(*args, **kwargs):
        proc = popen(*args, **kwargs)
        started.append(proc.pid)
        os.kill(os.getpid(), signal.SIGUSR1)  # the handler runs before Popen's caller sees proc
        return proc
    previous = signal.signal(signal.SIGUSR1, child.deferring(stop))
    monkeypatch.setattr(subprocess, "Popen", popen_then_signal)
    try:
        with pytest.raises(Stop):
            child.train(TrainConfig(steps=10**9))
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert started and not os.path.exists(f"/proc/{started[0]}"), "the child outlived the parent's exception"
