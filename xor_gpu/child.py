"""Training in a fresh process. Theano binds its device at import, so each device, and
each repeat that must be independent of the one before, runs as its own `xor-gpu train`.

The child writes its train report as JSON and, when it fails, its error as JSON (the path
in XOR_GPU_ERROR_JSON, written by the CLI): the parent reads both, never stderr text.
"""
import dataclasses
import json
import os
import signal
import subprocess
import tempfile
import time

from xor_gpu import engines
from xor_gpu.errors import EXIT_OK, TimedOut

ERROR_ENV = "XOR_GPU_ERROR_JSON"
ERROR_SCHEMA = "xor_gpu.error/1"
STOP_GRACE = 10  # seconds a stopped child has to exit before SIGKILL


@dataclasses.dataclass
class ChildRun:
    exit_status: int
    report: dict = None  # the train report when exit_status is 0
    error: str = ""  # the child's one-line error otherwise
    seconds: float = 0.0
    stderr: str = ""  # everything the child printed on stderr, for logs

    @property
    def ok(self):
        return self.exit_status == EXIT_OK


def train_args(config, seeds=None):
    """`xor-gpu train` arguments for config; with `seeds`, --seeds instead of config's --seed."""
    seed = ["--seeds", ",".join(map(str, seeds))] if seeds is not None else ["--seed", str(config.seed)]
    args = ["--engine", config.engine, "--device", config.device, "--floatx", config.floatx,
            "--hidden", str(config.hidden), "--lr", repr(config.lr), "--steps", str(config.steps), *seed]
    if config.steps_per_call is not None:  # else the child's device's default
        args += ["--steps-per-call", str(config.steps_per_call)]
    return args


def train(config, timeout=None, seeds=None):
    """Train `config` in a child process; returns a ChildRun (never raises for the child's failure).
    With `seeds`, the child trains each (`train --seeds`) and its report holds one run per seed."""
    with tempfile.TemporaryDirectory(prefix="xor-gpu-child-") as tmp:
        report_path, error_path = os.path.join(tmp, "report.json"), os.path.join(tmp, "error.json")
        # The engine's own Python: PyTensor and Theano need environments of their own.
        cmd = [engines.python_for(config.engine), "-m", "xor_gpu", "train", *train_args(config, seeds),
               "--json", report_path]
        start = time.perf_counter()
        try:
            returncode, stderr = _run(cmd, {**os.environ, ERROR_ENV: error_path}, timeout)
        except subprocess.TimeoutExpired as exc:
            return ChildRun(exit_status=TimedOut.exit_status,
                            error=f"training on {config.device} did not finish in {timeout:g} s",
                            seconds=time.perf_counter() - start, stderr=exc.stderr or "")
        run = ChildRun(exit_status=returncode, seconds=time.perf_counter() - start, stderr=stderr)
        if run.ok:
            run.report = _load(report_path)
        else:
            error = _load(error_path)
            # Without an error report the child crashed (a signal, a fault in native code).
            last = (stderr.strip().splitlines() or [""])[-1][:300]
            died = f"the child process died (exit {returncode}){': ' + last if last else ''}"
            run.error = error["message"] if error else died
    return run


class _Starting:
    """While Popen starts a child, a signal handler must not raise: between fork and exec the
    child exists but no Popen knows it, and it would outlive us. Handlers made by deferring()
    hold such a signal until the child is known, then raise it where the child is stopped with
    the parent. (Masking the signals would not do: the parent's numpy has threads of its own.)"""
    active, held = False, []

    @classmethod
    def done(cls):
        cls.active = False
        while cls.held:
            signal.raise_signal(cls.held.pop(0))


def deferring(handler):
    """`handler` (a signal handler that raises) as one that waits while a child is being started."""
    def handle(signum, frame):
        if _Starting.active:
            _Starting.held.append(signum)
        else:
            handler(signum, frame)
    return handle


def _run(cmd, env, timeout):
    """(exit status, stderr) of cmd. Whatever stops the parent while it waits (a signal that
    interrupts a check, a timeout) stops the child too: SIGTERM, then SIGKILL after STOP_GRACE."""
    _Starting.active = True
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    except BaseException:
        _Starting.done()
        raise
    with proc:
        try:
            _Starting.done()  # a signal held while the child started is raised here
            _, stderr = proc.communicate(timeout=timeout)
        except BaseException as exc:
            proc.terminate()
            try:
                _, stderr = proc.communicate(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, stderr = proc.communicate()
            if isinstance(exc, subprocess.TimeoutExpired):
                exc.stderr = stderr
            raise
    return proc.returncode, stderr


def write_error(exc, exit_status):
    """In the child: leave the error where the parent looks for it, when a parent asked."""
    path = os.environ.get(ERROR_ENV)
    if path:
        data = {"schema": ERROR_SCHEMA, "exit_status": exit_status, "type": type(exc).__name__,
                "message": " ".join(str(exc).split())}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)


def _load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
