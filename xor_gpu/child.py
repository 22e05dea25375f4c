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
from xor_gpu.results import train_report

ERROR_ENV = "XOR_GPU_ERROR_JSON"
ERROR_SCHEMA = "xor_gpu.error/1"
STOP_GRACE = 10  # seconds a stopped child has to exit before SIGKILL


@dataclasses.dataclass
class ChildRun:
    exit_status: int
    report: object = None  # its TrainReport (a SeedsReport with seeds) when exit_status is 0
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
    with start(config, seeds) as training:
        return training.result(timeout)


def start(config, seeds=None):
    """The Training of `config` in a child process, started now (to run beside other work)."""
    return Training(config, seeds)


class Training:
    """`xor-gpu train` in a child process. result() waits for it; whatever stops the parent
    while it waits (a signal that interrupts a check, a timeout), and stop() or leaving its
    `with` block before the result, stop the child too: SIGTERM, then SIGKILL after STOP_GRACE."""

    def __init__(self, config, seeds=None):
        # The engine's own Python: PyTensor and Theano need environments of their own.
        cmd = [engines.python_for(config.engine), "-m", "xor_gpu", "train", *train_args(config, seeds)]
        self.device = config.device
        self._tmp = tempfile.TemporaryDirectory(prefix="xor-gpu-child-")
        self._report, self._error = (os.path.join(self._tmp.name, f) for f in ("report.json", "error.json"))
        # stderr goes to a file, not a pipe: a child running beside other work is read only at its end.
        self._stderr = open(os.path.join(self._tmp.name, "stderr.txt"), "w+", encoding="utf-8", errors="replace")
        self.started = time.perf_counter()
        _Starting.active = True
        try:
            self._proc = subprocess.Popen([*cmd, "--json", self._report], stdout=subprocess.DEVNULL,
                                          stderr=self._stderr, env={**os.environ, ERROR_ENV: self._error})
        except BaseException:
            _Starting.done()
            self._cleanup()
            raise
        try:
            _Starting.done()  # a signal held while the child started is raised here
        except BaseException:
            self.stop()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def result(self, timeout=None):
        """The ChildRun, once the child has exited (at most `timeout` seconds from now)."""
        try:
            returncode = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            seconds, stderr = time.perf_counter() - self.started, self.stop()
            return ChildRun(exit_status=TimedOut.exit_status, seconds=seconds, stderr=stderr,
                            error=f"training on {self.device} did not finish in {timeout:g} s")
        except BaseException:
            self.stop()
            raise
        run = ChildRun(exit_status=returncode, seconds=time.perf_counter() - self.started, stderr=self._read())
        if run.ok:
            data = _load(self._report)
            run.report = None if data is None else train_report.read(data, f"the report of training on {self.device}")
        else:
            error = _load(self._error)
            # Without an error report the child crashed (a signal, a fault in native code).
            last = (run.stderr.strip().splitlines() or [""])[-1][:300]
            died = f"the child process died (exit {returncode}){': ' + last if last else ''}"
            run.error = error["message"] if error else died
        self._cleanup()
        return run

    def stop(self):
        """Stop the child if it still runs; what it printed on stderr so far."""
        if self._tmp is None:
            return ""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        stderr = self._read()
        self._cleanup()
        return stderr

    def _read(self):
        self._stderr.seek(0)
        return self._stderr.read()

    def _cleanup(self):
        if self._tmp is not None:
            self._stderr.close()
            self._tmp.cleanup()
            self._tmp = None


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
