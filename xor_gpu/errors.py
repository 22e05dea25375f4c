"""The errors a user can meet, each carrying the exit status the command line returns.

The CLI turns any of them into one line on stderr and `exit_status`; nothing else in the
package writes exit numbers.
"""
import signal


class XorGpuError(Exception):
    """Base class: a one-line message and the process exit status that goes with it."""

    exit_status = 1


class ConfigError(XorGpuError, ValueError):
    """Bad user input: nothing trained, nothing written."""

    exit_status = 2


class DeviceError(XorGpuError, RuntimeError):
    """The requested device or the setup cannot be used (never a silent CPU fallback)."""

    exit_status = 3


class Diverged(XorGpuError, RuntimeError):
    """The loss became NaN or infinite."""

    exit_status = 4


class CheckFailed(XorGpuError):
    """A verdict failed: not converged, devices or reports differ beyond tolerance."""

    exit_status = 5


class Interrupted(XorGpuError):
    """SIGTERM (a scheduler's time limit, a cancelled CI job) or SIGINT arrived: exit 128 + the
    signal's number, as a shell reports a process the signal ended (130, 143)."""

    def __init__(self, signum):
        self.signal_name = signal.Signals(signum).name
        self.exit_status = 128 + signum
        super().__init__(f"interrupted by {self.signal_name}")

    def __str__(self):  # the same, also after a library that caught it added to its args (Theano does)
        return f"interrupted by {self.signal_name}"


class TimedOut(CheckFailed):
    """A child run did not finish in the time given to it."""


def exit_words(status):
    """How a process ended, in words: "exit 3", or for one a signal ended (a negative status,
    as subprocess gives it) the signal's name, "killed by SIGILL (Illegal instruction)"."""
    if status is None or status >= 0:
        return f"exit {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        return f"killed by signal {-status}"
    return f"killed by {name} ({signal.strsignal(-status)})"


EXIT_OK = 0
EXIT_INTERRUPTED = Interrupted(signal.SIGINT).exit_status  # Ctrl-C outside a check
