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
from xor_gpu.errors import EXIT_OK, TimedOut, exit_words
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
    if seeds is None:
        return config.to_argv()
    return [*config.to_argv(leave_out=("seed",)), "--seeds", ",".join(map(str, seeds))]


def train(config, timeout=None, seeds=None):
    """Train `config` in a child process; returns a ChildRun (never raises for the child's failure).
    With `seeds`, the child trains each (`train --seeds`) and its report holds one run per seed."""
    with start(config, seeds) as training:
        return training.result(timeout)


def start(config, seeds=None):
    """The Training of `config` in a child process, started now (to run beside other work)."""
    return Training(config, seeds)


class Process:
    """A child process of the package's, and a folder for the files it writes (path()). Its
    stderr goes to a file, not a pipe: a child running beside other work is read only at its
    end. wait() for it; whatever stops the parent while it waits (a signal that interrupts a
    check, a timeout), and stop() or leaving its `with` block before it ends, stop the child
    too: SIGTERM, then SIGKILL after STOP_GRACE. Used by `check`, `parity` and the sweep (a
    training, below) and by `doctor --compile-only` (its compiling child)."""

    def __init__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="xor-gpu-child-")
        self._stderr = open(self.path("stderr.txt"), "w+", encoding="utf-8", errors="replace")
        self._proc = None

    def path(self, name):
        return os.path.join(self._tmp.name, name)

    def start(self, cmd, env):
        self.started = time.perf_counter()
        _Starting.active = True
        try:
            self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._stderr, env=env)
        except BaseException:
            _Starting.done()
            self._cleanup()
            raise
        try:
            _Starting.done()  # a signal held while the child started is raised here
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def wait(self, timeout=None):
        """(exit status, stderr) once the child has exited; after `timeout` seconds it is
        stopped and subprocess.TimeoutExpired raised (its stderr so far in the exception)."""
        try:
            returncode = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            exc.stderr = self.stop()
            raise
        except BaseException:
            self.stop()
            raise
        return returncode, self._read()

    def stop(self):
        """Stop the child if it still runs; what it printed on stderr so far."""
        if self._tmp is None:
            return ""
        if self._proc is not None and self._proc.poll() is None:
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


def died(returncode, stderr, what="the child process"):
    """The error of a child that left no word of its own (a signal, a fault in native code):
    the signal by its name, "... was killed by SIGILL (Illegal instruction)", else its exit."""
    last = (stderr.strip().splitlines() or [""])[-1][:300]
    how = f"was {exit_words(returncode)}" if returncode < 0 else f"died ({exit_words(returncode)})"
    return f"{what} {how}{': ' + last if last else ''}"


def read_json(path):
    """The JSON a child wrote at `path`, or None when it wrote none (or not all of it)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Training(Process):
    """`xor-gpu train` in a child process (its engine's own Python: PyTensor and Theano need
    environments of their own); result() waits for its ChildRun."""

    def __init__(self, config, seeds=None):
        super().__init__()
        self.device = config.device
        cmd = [engines.python_for(config.engine), "-m", "xor_gpu", "train", *train_args(config, seeds),
               "--json", self.path("report.json")]
        self.start(cmd, {**os.environ, ERROR_ENV: self.path("error.json")})

    def result(self, timeout=None):
        """The ChildRun, once the child has exited (at most `timeout` seconds from now)."""
        try:
            returncode, stderr = self.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            return ChildRun(exit_status=TimedOut.exit_status, seconds=time.perf_counter() - self.started,
                            stderr=exc.stderr, error=f"training on {self.device} did not finish in {timeout:g} s")
        run = ChildRun(exit_status=returncode, seconds=time.perf_counter() - self.started, stderr=stderr)
        if run.ok:
            data = read_json(self.path("report.json"))
            run.report = None if data is None else train_report.read(data, f"the report of training on {self.device}")
        else:
            error = read_json(self.path("error.json"))
            run.error = error["message"] if error else died(returncode, stderr, f"the training on {self.device}")
        self._cleanup()
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


def write_error(exc, exit_status):
    """In the child: leave the error where the parent looks for it, when a parent asked."""
    path = os.environ.get(ERROR_ENV)
    if path:
        data = {"schema": ERROR_SCHEMA, "exit_status": exit_status, "type": type(exc).__name__,
                "message": " ".join(str(exc).split())}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)
