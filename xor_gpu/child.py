"""Child processes of the package's, and the one way every child answers. Theano binds its
device at import, so each device, and each repeat that must be independent of the one before,
trains as its own `xor-gpu train`; `doctor --compile-only` compiles in a child of its own.

A child is `python -m MODULE ARGS` (Process.start); it writes its report as JSON to the path
its arguments name (Process.report), and when it fails its error (results.ErrorReport,
schema xor_gpu.error/1) to the path in XOR_GPU_ERROR_JSON, which every child is given
(write_error: the CLI's, and any child's own). The parent reads both through Process.answer,
never stderr text: a child that left no error of its own (a signal, a fault in native code) is
named by how it ended.
"""
import dataclasses
import json
import os
import signal
import subprocess
import tempfile
import time

from xor_gpu import engine_python, files
from xor_gpu.errors import EXIT_OK, TimedOut, exit_words
from xor_gpu.results import ERROR_SCHEMA, ErrorReport, train_report

ERROR_ENV = "XOR_GPU_ERROR_JSON"
STOP_GRACE = 10  # seconds a stopped child has to exit before SIGKILL


@dataclasses.dataclass
class ChildRun:
    exit_status: int
    report: object = None  # what the child answered (read by the caller's reader) when exit_status is 0
    error: str = ""  # the child's one-line error otherwise
    error_type: str = None  # the type of the child's error, when it wrote one
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
    """A child process of the package's (`what` names it in errors: "training on cpu"), and a
    folder for the files it writes. Its stderr goes to a file, not a pipe: a child running
    beside other work is read only at its end. answer() waits for it; whatever stops the parent
    while it waits (a signal that interrupts a check, a timeout), and stop() or leaving its
    `with` block before it ends, stop the child too: SIGTERM, then SIGKILL after STOP_GRACE."""

    def __init__(self, what):
        self.what = what
        self._tmp = tempfile.TemporaryDirectory(prefix="xor-gpu-child-")
        self._stderr = open(self.path("stderr.txt"), "w+", encoding="utf-8", errors="replace")
        self._proc = None

    def path(self, name):
        return os.path.join(self._tmp.name, name)

    @property
    def report(self):
        """Where the child writes its report: its arguments name this path."""
        return self.path("report.json")

    def start(self, python, module, args, env=None):
        """Run `python -m module ARGS` in `env` (default: this process's), told where to leave its error."""
        env = {**(os.environ if env is None else env), ERROR_ENV: self.path("error.json")}
        self.started = time.perf_counter()
        _Starting.active = True
        try:
            self._proc = subprocess.Popen([python, "-m", module, *args], stdout=subprocess.DEVNULL,
                                          stderr=self._stderr, env=env)
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

    def answer(self, read, timeout=None):
        """The ChildRun, once the child has exited (at most `timeout` seconds from now): its
        report as `read` (a function of the JSON) makes it, or its error."""
        try:
            returncode, stderr = self.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            return ChildRun(exit_status=TimedOut.exit_status, seconds=time.perf_counter() - self.started,
                            stderr=exc.stderr, error=f"{self.what} did not finish in {timeout:g} s")
        run = ChildRun(exit_status=returncode, seconds=time.perf_counter() - self.started, stderr=stderr)
        if run.ok:
            data = read_json(self.report)
            run.report = None if data is None else read(data)
        else:
            error = read_error(self.path("error.json"))
            run.error = error.message if error else died(returncode, stderr, f"the {self.what}")
            run.error_type = error and error.type
        self._cleanup()
        return run

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


def read_error(path):
    """The ErrorReport a child left at `path`, or None (none, or not one)."""
    data = read_json(path)
    return ErrorReport.from_dict(data) if isinstance(data, dict) and data.get("schema") == ERROR_SCHEMA else None


class Training(Process):
    """`xor-gpu train` in a child process (its engine's own Python: PyTensor and Theano need
    environments of their own); result() waits for its ChildRun."""

    def __init__(self, config, seeds=None):
        super().__init__(f"training on {config.device}")
        self.device = config.device
        self.start(engine_python.python_for(config.engine), "xor_gpu",
                   ["train", *train_args(config, seeds), "--json", self.report])

    def result(self, timeout=None):
        """The ChildRun, once the child has exited (at most `timeout` seconds from now)."""
        return self.answer(lambda data: train_report.read(data, f"the report of training on {self.device}"), timeout)


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
        files.write_json(path, ErrorReport(exit_status=exit_status, type=type(exc).__name__,
                                           message=" ".join(str(exc).split())).to_dict())
