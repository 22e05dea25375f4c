"""The errors a user can meet, each carrying the exit status the command line returns.

The CLI turns any of them into one line on stderr and `exit_status`; nothing else in the
package writes exit numbers.
"""


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


EXIT_OK = 0
EXIT_INTERRUPTED = 130
