"""`xor-gpu parity`'s result: one config on several runs, each against the first; and a run
that did not finish (Failure), as parity and the seed sweep record it."""
import dataclasses

from xor_gpu.errors import CheckFailed, DeviceError, exit_words
from xor_gpu.results.runs import Difference, Tolerances, held_runs
from xor_gpu.results import PARITY_SCHEMA, plain


# Why a parity failed: in its error, and as the reason of its node in compare's fleet.
NOT_CONVERGED = "not every device converged"
BEYOND_TOLERANCE = "devices differ by more than the tolerance"


@dataclasses.dataclass(frozen=True)
class Failure:
    """A run that did not finish: its process' exit status and one-line error."""
    exit_status: int
    error: str

    def to_dict(self):
        return dataclasses.asdict(self)

    def of(self, label):
        return f"{label} failed ({exit_words(self.exit_status)}): {self.error}"


def raise_for_failures(failures):
    """Runs that did not finish: DeviceError when a device could not be used (a setup problem,
    as in `train`), else CheckFailed."""
    if failures:
        text = "; ".join(f.of(d) for d, f in failures.items())
        raise (DeviceError if any(f.exit_status == DeviceError.exit_status for f in failures.values())
               else CheckFailed)(text)


@dataclasses.dataclass
class Parity:
    """`xor-gpu parity`: one config on several runs (devices or engines); the first is the reference."""
    config: dict
    devices: list
    tolerances: Tolerances
    runs: dict  # label -> TrainReport
    failures: dict  # label -> Failure
    differences: dict = None  # label -> Difference against the reference; none when a run failed

    def __post_init__(self):
        if self.differences is None:
            ref = self.runs.get(self.reference)
            self.differences = {} if self.failures else {
                d: Difference.between(ref, self.runs[d]) for d in self.devices[1:]}

    @property
    def reference(self):
        return self.devices[0]

    @property
    def converged(self):
        return all(r.converged for r in self.runs.values())

    @property
    def within(self):
        return all(self.tolerances.admit(d) for d in self.differences.values())

    @property
    def passed(self):
        return not self.failures and self.converged and self.within

    def verdict(self):
        """Raise the error of a failed parity (DeviceError when a device could not be used)."""
        raise_for_failures(self.failures)
        if self.problems():
            raise CheckFailed(f"parity failed: {'; '.join(self.problems())}")

    def problems(self):
        """Why the verdict fails, other than a failed run: [] when it passes."""
        return [text for ok, text in ((self.converged, NOT_CONVERGED), (self.within, BEYOND_TOLERANCE)) if not ok]

    def to_dict(self):
        return {"schema": PARITY_SCHEMA, "config": self.config, "devices": self.devices,
                "reference": self.reference, "tolerances": self.tolerances.to_dict(), "runs": plain(self.runs),
                "failures": {k: f.to_dict() for k, f in self.failures.items()},
                "differences": {k: d.to_dict() for k, d in self.differences.items()},
                "converged": self.converged, "passed": self.passed}

    @classmethod
    def from_dict(cls, data, path="parity"):
        """`path` names the report in the errors of its runs."""
        runs = held_runs(path, data["runs"])
        return cls(data["config"], data["devices"], Tolerances.from_dict(data["tolerances"]), runs,
                   {k: Failure(**f) for k, f in data["failures"].items()},
                   {k: Difference.from_dict(d) for k, d in data["differences"].items()})
