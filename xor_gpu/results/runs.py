"""Training runs held against each other: a run with where it was read (TrainRun), its
difference to a reference run (Difference), within the tolerances (Tolerances); the runs a
parity or check report holds, validated as they are read."""
import dataclasses

import numpy as np

from xor_gpu.errors import ConfigError
from xor_gpu.problem import ROWS
from xor_gpu.results.train_report import TrainReport, finite


# float32 on two devices differs by summation order and by each device's exp(); the seed
# config measured 2.2e-8 (predictions) and 1.3e-6 (relative loss) between CPU and PoCL,
# 5.7e-6 and 8.5e-5 between Theano float32 and the float64 oracle. The defaults leave room
# for other hardware while a real bug (gradient, draw order, lr) moves predictions by >1e-2.
DEFAULT_ATOL = 1e-4  # max |prediction difference| against the reference
DEFAULT_RTOL = 1e-3  # max |loss difference| / |reference loss| over the sampled history


@dataclasses.dataclass(frozen=True)
class Tolerances:
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL

    def __post_init__(self):
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if not finite(value) or value < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")

    def admit(self, diff):
        return diff.max_abs_prediction_diff <= self.atol and diff.max_rel_loss_diff <= self.rtol

    def to_dict(self):
        return {"atol_predictions": self.atol, "rtol_loss_history": self.rtol}

    @classmethod
    def from_dict(cls, data):
        return cls(data["atol_predictions"], data["rtol_loss_history"])


def relative_loss_differences(reference, other):
    """|other - reference| / |reference| per loss sample (numpy arrays), and the mask of
    samples exactly equal; the common length of both histories."""
    n = min(len(reference), len(other))
    ref, val = np.asarray(reference[:n], dtype=float), np.asarray(other[:n], dtype=float)
    diff = np.abs(val - ref)
    return diff / np.maximum(np.abs(ref), 1e-30), diff == 0


def max_prediction_difference(reference, other):
    """Over the four input rows, of two TrainReports."""
    return max(abs(other.predictions[k] - reference.predictions[k]) for k in ROWS)


@dataclasses.dataclass(frozen=True)
class Difference:
    """One run against a reference run."""
    max_abs_prediction_diff: float
    max_rel_loss_diff: float
    bitwise_equal: bool

    @classmethod
    def between(cls, reference, other):
        """Of two TrainReports."""
        rel, _ = relative_loss_differences(reference.loss_history.values, other.loss_history.values)
        return cls(max_prediction_difference(reference, other), float(rel.max()),
                   other.weights_sha256 == reference.weights_sha256)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class TrainRun:
    """One training run: its label (where it was read) and its TrainReport."""
    label: str
    report: TrainReport

    @property
    def converged(self):
        return self.report.converged

    def machine(self):
        """The architecture it ran on (`uname -m`, as its origin's os names it), or None."""
        words = (self.report.origin or {}).get("os", "").split("-")
        return words[words.index("with") - 1] if "with" in words[1:] else None

    def where(self):
        """Short text: host, then the image or bundle it ran in, or the versions of a plain install."""
        origin = self.report.origin or {}
        package = origin.get("package")
        if package:
            commit = package.get("git_commit", "")[:12]
            made = f"{package['name']}{'@' + commit if commit else ''}"
        else:
            v = self.report.versions or {}
            engine = "pytensor" if "pytensor" in v else "theano"
            made = f"{engine} {v.get(engine, '?')}, numpy {v.get('numpy', '?')}"
        return f"{origin.get('host', '?')} ({made})"


def held_runs(path, runs):
    """{name: TrainReport} of the runs a parity or check report holds (`runs`, as read), each
    validated and named PATH[NAME] in its errors."""
    runs = runs or {}
    if not isinstance(runs, dict):
        raise ConfigError(f"{path}: runs is not a mapping")
    return {name: TrainReport.from_dict(run, f"{path}[{name}]") for name, run in runs.items()}


def check_same_config(reference, runs):
    for run in runs:
        mismatch = reference.report.config_mismatch(run.report.config)
        if mismatch:
            field, ours, theirs = mismatch
            raise ConfigError(f"reports of different configs: {field} is {ours!r} in {reference.label} but "
                              f"{theirs!r} in {run.label}")
