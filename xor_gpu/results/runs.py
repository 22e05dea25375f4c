"""Training runs held against each other: a run with where it was read (TrainRun), its
difference to a reference run (Difference), within the tolerances (Tolerances); the runs a
train, parity or check report holds, validated as they are read."""
import dataclasses
import math

import numpy as np

from xor_gpu.errors import ConfigError
from xor_gpu.problem import ROWS
from xor_gpu.results.schemas import CHECK_SCHEMA, PARITY_SCHEMA, RUN_SCHEMAS, TRAIN_SCHEMA, load


# float32 on two devices differs by summation order and by each device's exp(); the seed
# config measured 2.2e-8 (predictions) and 1.3e-6 (relative loss) between CPU and PoCL,
# 5.7e-6 and 8.5e-5 between Theano float32 and the float64 oracle. The defaults leave room
# for other hardware while a real bug (gradient, draw order, lr) moves predictions by >1e-2.
DEFAULT_ATOL = 1e-4  # max |prediction difference| against the reference
DEFAULT_RTOL = 1e-3  # max |loss difference| / |reference loss| over the sampled history

CONFIG_FIELDS = ("floatx", "hidden", "lr", "steps", "seed")  # what makes runs comparable


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class Tolerances:
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL

    def __post_init__(self):
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if not _finite(value) or value < 0:
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
    """Over the four input rows, of two train reports."""
    return max(abs(other["predictions"][k] - reference["predictions"][k]) for k in ROWS)


@dataclasses.dataclass(frozen=True)
class Difference:
    """One run against a reference run."""
    max_abs_prediction_diff: float
    max_rel_loss_diff: float
    bitwise_equal: bool

    @classmethod
    def between(cls, reference, other):
        """Of two train reports (dicts)."""
        rel, _ = relative_loss_differences(reference["loss_history"]["values"], other["loss_history"]["values"])
        return cls(max_prediction_difference(reference, other), float(rel.max()),
                   other["weights_sha256"] == reference["weights_sha256"])

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class TrainRun:
    """One training run: its label (where it was read) and its train report, validated."""
    label: str
    report: dict

    def __post_init__(self):
        _validate_run(self.label, self.report)

    def __getitem__(self, key):
        return self.report[key]

    @property
    def converged(self):
        return self.report["converged"]

    def config_mismatch(self, other):
        """The first config field in which `other` (a TrainRun) differs, or None."""
        return next((f for f in CONFIG_FIELDS if self["config"][f] != other["config"][f]), None)

    def where(self):
        """Short text: host, then the image or bundle it ran in, or the versions of a plain install."""
        origin = self.report.get("origin") or {}
        package = origin.get("package")
        if package:
            commit = package.get("git_commit", "")[:12]
            made = f"{package['name']}{'@' + commit if commit else ''}"
        else:
            v = self.report.get("versions", {})
            engine = "pytensor" if "pytensor" in v else "theano"
            made = f"{engine} {v.get(engine, '?')}, numpy {v.get('numpy', '?')}"
        return f"{origin.get('host', '?')} ({made})"


def _validate_run(label, run):
    if not isinstance(run, dict) or run.get("schema") != TRAIN_SCHEMA:
        raise ConfigError(f"{label}: not a {TRAIN_SCHEMA} run")
    predictions = run.get("predictions")
    if not isinstance(predictions, dict) or any(k not in predictions for k in ROWS):
        raise ConfigError(f"{label}: predictions missing (need rows {', '.join(ROWS)})")
    bad = [k for k in ROWS if not _finite(predictions[k])]
    if bad:
        raise ConfigError(f"{label}: prediction for row {bad[0]} is {predictions[bad[0]]!r}, not a finite number")
    history = (run.get("loss_history") or {}).get("values")
    if not isinstance(history, list) or not history or not all(_finite(v) for v in history):
        raise ConfigError(f"{label}: loss_history missing or not finite")
    config = run.get("config")
    if not isinstance(config, dict) or any(f not in config for f in CONFIG_FIELDS):
        raise ConfigError(f"{label}: config missing (need {', '.join(CONFIG_FIELDS)})")
    if not isinstance(run.get("weights_sha256"), str):
        raise ConfigError(f"{label}: weights_sha256 missing (a report older than this version)")
    if not isinstance(run.get("converged"), bool) or not isinstance(run.get("device"), dict):
        raise ConfigError(f"{label}: converged or device missing")


def runs_in(path, data):
    """[TrainRun] of every training run a report (train, parity or check) holds; may be none."""
    schema = data["schema"]
    if schema == TRAIN_SCHEMA:
        return [TrainRun(str(path), data)]
    if schema in (PARITY_SCHEMA, CHECK_SCHEMA):
        runs = data.get("runs") or {}
        if not isinstance(runs, dict):
            raise ConfigError(f"{path}: runs is not a mapping")
        return [TrainRun(f"{path}[{name}]", run) for name, run in runs.items()]
    raise ConfigError(f"{path}: unknown schema {schema!r} (expected {', '.join(RUN_SCHEMAS[:-1])} "
                      f"or {RUN_SCHEMAS[-1]})")


def reference_run(path, label=None):
    """The one training run of a reference report."""
    runs = runs_in(path, load(path))
    if len(runs) != 1:
        raise ConfigError(f"{label or path}: a reference must hold one training run, it holds {len(runs)}")
    return runs[0]


def check_same_config(reference, runs):
    for run in runs:
        field = reference.config_mismatch(run)
        if field:
            raise ConfigError(f"reports of different configs: {field} is {reference['config'][field]!r} in "
                              f"{reference.label} but {run['config'][field]!r} in {run.label}")
