"""What every command produces, typed: a train run, its differences against a reference,
parity, a seed sweep, a check summary, compare's rows and nodes. The one place that knows
every report schema: reading a report file (ConfigError, one line, for anything that is not
one of ours) and each result's JSON (to_dict, written by files.write_json).

The schemas are those of README.md; fields are only ever added (tests/data holds reports of
earlier releases, which must keep loading).
"""
import dataclasses
import json
import math
import signal

import numpy as np

from xor_gpu.devices import device
from xor_gpu.errors import EXIT_OK, CheckFailed, ConfigError, DeviceError, Interrupted
from xor_gpu.problem import ROWS

TRAIN_SCHEMA = "xor_gpu.train/1"
SEEDS_SCHEMA = "xor_gpu.train-seeds/1"  # train --seeds: one train report per seed
PARITY_SCHEMA = "xor_gpu.parity/1"
SWEEP_SCHEMA = "xor_gpu.parity-seeds/1"  # parity --seeds: the matrix of seeds and devices
CHECK_SCHEMA = "xor_gpu.check/1"
COMPARE_SCHEMA = "xor_gpu.compare/1"
RUN_SCHEMAS = (TRAIN_SCHEMA, PARITY_SCHEMA, CHECK_SCHEMA)  # what compare reads

# float32 on two devices differs by summation order and by each device's exp(); the seed
# config measured 2.2e-8 (predictions) and 1.3e-6 (relative loss) between CPU and PoCL,
# 5.7e-6 and 8.5e-5 between Theano float32 and the float64 oracle. The defaults leave room
# for other hardware while a real bug (gradient, draw order, lr) moves predictions by >1e-2.
DEFAULT_ATOL = 1e-4  # max |prediction difference| against the reference
DEFAULT_RTOL = 1e-3  # max |loss difference| / |reference loss| over the sampled history

CONFIG_FIELDS = ("floatx", "hidden", "lr", "steps", "seed")  # what makes runs comparable

# Why a parity failed: in its error, and as the reason of its node in compare's fleet.
NOT_CONVERGED = "not every device converged"
BEYOND_TOLERANCE = "devices differ by more than the tolerance"


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


def _plain(value):
    """value with every result object in it as its JSON dict."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


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


@dataclasses.dataclass(frozen=True)
class Failure:
    """A run that did not finish: its process' exit status and one-line error."""
    exit_status: int
    error: str

    def to_dict(self):
        return dataclasses.asdict(self)

    def of(self, label):
        return f"{label} failed (exit {self.exit_status}): {self.error}"


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
    runs: dict  # label -> train report
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
        return all(r["converged"] for r in self.runs.values())

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
                "reference": self.reference, "tolerances": self.tolerances.to_dict(), "runs": self.runs,
                "failures": {k: f.to_dict() for k, f in self.failures.items()},
                "differences": {k: d.to_dict() for k, d in self.differences.items()},
                "converged": self.converged, "passed": self.passed}

    @classmethod
    def from_dict(cls, data):
        return cls(data["config"], data["devices"], Tolerances.from_dict(data["tolerances"]), data["runs"],
                   {k: Failure(**f) for k, f in data["failures"].items()},
                   {k: Difference.from_dict(d) for k, d in data["differences"].items()})


SWEEP_RUN_FIELDS = ("predictions", "final_loss", "converged", "weights_sha256", "steps_per_second")
SWEEP_GROUPS = ("disagree", "beyond_tolerance", "converged_nowhere", "converged_everywhere")


@dataclasses.dataclass
class Sweep:
    """`xor-gpu parity --seeds`: per seed, each run against the reference run's same seed.
    A seed fails when its runs disagree on convergence, or all converge and differ beyond the
    tolerance; one that converges nowhere is reported, not failed (stalled runs drift apart
    without telling anything about the devices)."""
    config: dict
    devices: list
    seeds: list
    tolerances: Tolerances
    device_names: dict
    runs: dict  # label -> {seed as text -> the run's SWEEP_RUN_FIELDS}
    failures: dict  # label -> Failure
    matrix: dict  # seed as text -> {"converged": {label: bool}, "differences": {label: Difference}}

    @classmethod
    def of_reports(cls, config, devices, seeds, tolerances, sweeps, failures):
        """From each run's `train --seeds` report (sweeps: {label: report}); devices[0] is the reference."""
        matrix = {}
        for seed in seeds if not failures else []:
            runs = {d: sweeps[d]["runs"][str(seed)] for d in devices}
            matrix[str(seed)] = {"converged": {d: r["converged"] for d, r in runs.items()},
                                 "differences": {d: Difference.between(runs[devices[0]], runs[d])
                                                 for d in devices[1:]}}
        return cls(config, devices, seeds, tolerances,
                   {d: s["runs"][str(seeds[0])]["device"]["name"] for d, s in sweeps.items()},
                   {d: {k: {f: r[f] for f in SWEEP_RUN_FIELDS} for k, r in s["runs"].items()}
                    for d, s in sweeps.items()}, failures, matrix)

    @property
    def reference(self):
        return self.devices[0]

    def groups(self):
        groups = {g: [] for g in SWEEP_GROUPS}
        for seed in self.seeds if self.matrix else []:
            row = self.matrix[str(seed)]
            converged = set(row["converged"].values())
            if len(converged) > 1:
                groups["disagree"].append(seed)
            elif converged == {False}:
                groups["converged_nowhere"].append(seed)
            else:
                groups["converged_everywhere"].append(seed)
                if not all(self.tolerances.admit(d) for d in row["differences"].values()):
                    groups["beyond_tolerance"].append(seed)
        return groups

    @property
    def passed(self):
        groups = self.groups()
        return not self.failures and not groups["disagree"] and not groups["beyond_tolerance"]

    def differences(self):
        return [d for row in self.matrix.values() for d in row["differences"].values()]

    def verdict(self):
        raise_for_failures(self.failures)
        groups = self.groups()
        problems = [f"{what} on seed{'s' if len(seeds) > 1 else ''} {_seed_list(seeds)}"
                    for what, seeds in (("devices disagree on convergence", groups["disagree"]),
                                        (BEYOND_TOLERANCE, groups["beyond_tolerance"]))
                    if seeds]
        if problems:
            raise CheckFailed(f"parity failed: {'; '.join(problems)}")

    def to_dict(self):
        return {"schema": SWEEP_SCHEMA, "config": self.config, "devices": self.devices,
                "reference": self.reference, "seeds": self.seeds, "tolerances": self.tolerances.to_dict(),
                "device_names": self.device_names, "runs": self.runs,
                "failures": {k: f.to_dict() for k, f in self.failures.items()},
                "matrix": {s: {"converged": row["converged"],
                               "differences": {d: v.to_dict() for d, v in row["differences"].items()}}
                           for s, row in self.matrix.items()},
                **self.groups(), "passed": self.passed}

    @classmethod
    def from_dict(cls, data):
        matrix = {s: {"converged": row["converged"],
                      "differences": {d: Difference.from_dict(v) for d, v in row["differences"].items()}}
                  for s, row in data["matrix"].items()}
        return cls(data["config"], data["devices"], data["seeds"], Tolerances.from_dict(data["tolerances"]),
                   data["device_names"], data["runs"], {k: Failure(**f) for k, f in data["failures"].items()},
                   matrix)


def _seed_list(seeds, most=10):
    text = ",".join(map(str, seeds[:most]))
    return text + (f" and {len(seeds) - most} more" if len(seeds) > most else "")


# A check's own status (summary.json "status"), and each step's.
PASSED, FAILED, UNUSABLE, INTERRUPTED = "passed", "failed", "unusable", "interrupted"
CHECK_STATUSES = (PASSED, FAILED, UNUSABLE, INTERRUPTED)
SKIPPED = "skipped"


def status_of_exit(exit_status):
    """A summary written before "status" existed: its status from its exit status."""
    return {EXIT_OK: PASSED, DeviceError.exit_status: UNUSABLE}.get(exit_status, FAILED)


@dataclasses.dataclass
class Step:
    name: str
    status: str  # PASSED, FAILED or SKIPPED
    seconds: float
    summary: str
    figures: dict = dataclasses.field(default_factory=dict)  # key figures, beside the others in JSON
    started: float = None  # seconds after the check began (None in summaries older than it)

    def to_dict(self):
        started = {} if self.started is None else {"started": self.started}
        return {"name": self.name, "status": self.status, **started, "seconds": self.seconds,
                "summary": self.summary, **_plain(self.figures)}

    @classmethod
    def from_dict(cls, data):
        known = ("name", "status", "seconds", "summary")
        return cls(*(data[k] for k in known), {k: v for k, v in data.items() if k not in (*known, "started")},
                   data.get("started"))


def overlap(steps):
    """Seconds during which two steps ran at once: their seconds less the time covered by any.
    None when a step's start is not known."""
    if any(s.started is None for s in steps):
        return None
    covered, end = 0.0, 0.0
    for started, seconds in sorted((s.started, s.seconds) for s in steps):
        covered += max(0.0, started + seconds - max(started, end))
        end = max(end, started + seconds)
    return round(sum(s.seconds for s in steps) - covered, 2)


@dataclasses.dataclass
class CheckSummary:
    """`xor-gpu check`'s summary.json. `extra` keeps what this version does not model (e.g. a
    later release's fields), so that a summary is written back as it was read."""
    status: str
    exit_status: int
    config: dict
    device: dict  # requested, and active and name once the device trained
    steps: list  # Step
    tolerances: Tolerances
    reference: dict
    versions: dict
    origin: dict
    runs: dict  # label -> train report
    failed_step: str = None
    reason: str = None
    interrupted_by: str = None
    node: str = None
    extra: dict = dataclasses.field(default_factory=dict)  # e.g. "cuda": the NVIDIA libraries used
    # From the check's start to its summary; the steps' seconds add up to it plus the overlap
    # (the CPU reference trained beside a GPU's runs), less what an interrupted step had run.
    wall_seconds: float = None

    @property
    def passed(self):
        return self.status == PASSED

    @property
    def overlap_seconds(self):
        return overlap(self.steps)

    def verdict(self):
        """Raise the error the check ended with, whose exit status is the summary's."""
        if self.status == INTERRUPTED:
            raise Interrupted(signal.Signals[self.interrupted_by])
        if self.status != PASSED:
            raise (DeviceError if self.status == UNUSABLE else CheckFailed)(self.reason)

    def to_dict(self):
        return {"schema": CHECK_SCHEMA, "status": self.status, "passed": self.passed,
                "exit_status": self.exit_status, "failed_step": self.failed_step, "reason": self.reason,
                "interrupted_by": self.interrupted_by, "node": self.node, "config": self.config,
                "device": self.device, "steps": [s.to_dict() for s in self.steps],
                "tolerances": self.tolerances.to_dict(), "reference": self.reference, "versions": self.versions,
                "origin": self.origin, "runs": self.runs, **self._timing(), **self.extra}

    def _timing(self):
        if self.wall_seconds is None:  # a summary older than these fields, written back as read
            return {}
        return {"wall_seconds": self.wall_seconds, "overlap_seconds": self.overlap_seconds}

    @classmethod
    def from_dict(cls, data, path="summary"):
        status = data.get("status", status_of_exit(data.get("exit_status")))
        if status not in CHECK_STATUSES:
            raise ConfigError(f"{path}: unknown check status {status!r} (expected {', '.join(CHECK_STATUSES)})")
        try:
            steps = [Step.from_dict(s) for s in data["steps"]]
            failed = next((s.name for s in steps if s.status == FAILED), None)
            fields = {f.name for f in dataclasses.fields(cls)} | {"schema", "passed", "overlap_seconds"}
            return cls(status, data["exit_status"], data["config"], data["device"], steps,
                       Tolerances.from_dict(data["tolerances"]), data["reference"], data.get("versions") or {},
                       data.get("origin") or {}, data.get("runs") or {},
                       data.get("failed_step", failed), data.get("reason", _old_reason(status, steps)),
                       data.get("interrupted_by"), data.get("node", (data.get("origin") or {}).get("host")),
                       {k: v for k, v in data.items() if k not in fields}, data.get("wall_seconds"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path}: not a complete {CHECK_SCHEMA} summary ({exc!r})") from None


def _old_reason(status, steps):
    """An older summary's reason, as this version words it: from its first failed step."""
    failed = next((s for s in steps if s.status == FAILED), None)
    if status == PASSED or failed is None:
        return None
    return failed.summary if status == UNUSABLE else f"check failed at {failed.name}: {failed.summary}"


def load(path):
    """A report file as a dict; ConfigError (one line) for anything that is not one of ours."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror if isinstance(exc, OSError) else 'not text'}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        # Cut short (a copy or a write that stopped): the parser ran out of text, or a JSON
        # object or array never closes (a number cut as "1e" fails one character before the end).
        body = text.strip()
        truncated = body and (getattr(exc, "pos", 0) >= len(text.rstrip())
                              or body[0] in "{[" and body[-1] not in "}]")
        raise ConfigError(f"{path}: {'truncated JSON' if truncated else 'not JSON'} ({exc})") from None
    except RecursionError:  # Python's parser gives up past about a thousand levels
        raise ConfigError(f"{path}: not an xor_gpu report (JSON nested too deeply)") from None
    if not isinstance(data, dict) or "schema" not in data:
        raise ConfigError(f"{path}: not an xor_gpu report (no schema)")
    return data


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


# A node's status in compare's fleet view (upper case: a verdict, as compare's "FAIL").
NODE_STATUSES = ("PASS", "FAIL", "UNUSABLE", "INTERRUPTED")
NODE_OF_CHECK = dict(zip(CHECK_STATUSES, NODE_STATUSES))
NODE_PASS = NODE_OF_CHECK[PASSED]


def alike(items, key):
    """[[item, ...], ...]: `items` grouped by key(item), in the order each group first appears;
    an item whose key is None stays alone. How compare shows a fleet of many identical nodes."""
    groups, index = [], {}
    for item in items:
        k = key(item)
        if k is None:
            groups.append([item])
        elif k in index:
            groups[index[k]].append(item)
        else:
            index[k] = len(groups)
            groups.append([item])
    return groups


def node_kind(node):
    """What makes passed nodes alike (one row for many in compare): the same device, GPU,
    driver, libraries, engine and final weights; a node that did not pass is never grouped."""
    if node.status != NODE_PASS:
        return None
    return (node.device, node.gpu, node.driver, node.nvrtc, node.cublas, node.libraries, node.engine,
            node.weights_sha256, node.runs)


def row_kind(row):
    """What makes runs alike: the same device and GPU, weights and verdict against the reference."""
    return (row.device.get("active"), row.device.get("name"), row.weights_sha256, row.difference, row.converged,
            row.passed)


@dataclasses.dataclass
class Row:
    """compare: one run against the reference."""
    label: str
    where: str
    device: dict
    predictions: dict
    weights_sha256: str
    converged: bool
    difference: Difference
    passed: bool

    @classmethod
    def of(cls, run, reference, tolerances):
        diff = Difference.between(reference.report, run.report)
        return cls(run.label, run.where(), run["device"], run["predictions"], run["weights_sha256"],
                   run.converged, diff, tolerances.admit(diff) and run.converged)

    def to_dict(self):
        return {"label": self.label, "where": self.where, "device": self.device, "predictions": self.predictions,
                "weights_sha256": self.weights_sha256, "converged": self.converged, **self.difference.to_dict(),
                "passed": self.passed}


def gpu_libraries(versions, cuda):
    """The GPU libraries a run used, in words: libgpuarray's NVRTC and cuBLAS for a run that
    loaded pygpu, else the JAX packages (jax, jaxlib, its CUDA plugin) its versions list; None
    when neither."""
    if "pygpu" in versions:
        found = [f"{label} {(cuda.get(kind) or {}).get('version')}" for kind, label in (("nvrtc", "NVRTC"),
                                                                                          ("cublas", "cuBLAS"))
                 if cuda.get(kind)]
        return ", ".join(found) or None
    return ", ".join(f"{name} {version}" for name, version in versions.items() if name.startswith("jax")) or None


@dataclasses.dataclass
class Node:
    """compare: one report given, seen as the machine that made it. nvrtc and cublas: those
    libgpuarray loaded (None for a run that did not load it); libraries: what the GPU run used,
    in words (gpu_libraries)."""
    report: str
    node: str
    device: str
    gpu: str
    driver: str
    nvrtc: str
    cublas: str
    status: str  # NODE_STATUSES
    failed_step: str = None
    reason: str = None
    libraries: str = None
    engine: str = None  # what trained: the check's or the train report's engine (None: not known)
    weights_sha256: str = None  # of its run on the device asked for (None: no such run)
    runs: int = 0  # training runs it holds (not in JSON: the rows are)

    def to_dict(self):
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "runs"}

    @classmethod
    def of(cls, path, data):
        """From a report (dict), by its schema; its runs are counted, not compared."""
        runs = runs_in(path, data)
        origin = data.get("origin") or (runs[0]["origin"] if runs else {}) or {}
        if data["schema"] == CHECK_SCHEMA:
            summary = CheckSummary.from_dict(data, path)
            cuda = summary.extra.get("cuda") or {}
            requested = summary.device.get("requested")
            gpu = _gpu(requested, summary.device.get("name"))
            libgpuarray = "pygpu" in summary.versions
            return cls(str(path), summary.node or origin.get("host"), requested, gpu, cuda.get("driver"),
                       *((cuda.get(kind) or {}).get("version") if libgpuarray else None for kind in ("nvrtc", "cublas")),
                       NODE_OF_CHECK[summary.status], summary.failed_step, summary.reason,
                       libraries=gpu_libraries(summary.versions, cuda) if gpu else None,
                       engine=summary.config.get("engine"),
                       weights_sha256=(summary.runs.get(requested) or {}).get("weights_sha256"), runs=len(runs))
        if data["schema"] == PARITY_SCHEMA:
            try:
                parity = Parity.from_dict(data)
            except (KeyError, TypeError, AttributeError) as exc:
                raise ConfigError(f"{path}: not a complete {PARITY_SCHEMA} report ({exc!r})") from None
            failed = next(iter(parity.failures.items()), None)
            reason = failed[1].of(failed[0]) if failed else next(iter(parity.problems()), None)
            names = [r["device"]["name"] for r in parity.runs.values() if not device(r["device"]["requested"]).is_cpu]
            return cls(str(path), origin.get("host"), ",".join(parity.devices), names[0] if names else None,
                       None, None, None, NODE_OF_CHECK[PASSED if parity.passed else FAILED],
                       None if parity.passed else "parity", reason, runs=len(runs))
        run = runs[0]
        requested = run["device"]["requested"]
        return cls(str(path), origin.get("host"), requested, _gpu(requested, run["device"].get("name")),
                   None, None, None, NODE_OF_CHECK[PASSED if run.converged else FAILED],
                   None if run.converged else "train", None if run.converged else "did not converge",
                   engine=run["config"].get("engine"), weights_sha256=run["weights_sha256"], runs=1)


def _gpu(requested, name):
    return None if requested is None or device(requested).is_cpu else name


@dataclasses.dataclass
class Comparison:
    """`xor-gpu compare`: every run against one reference, and every report as a node."""
    config: dict  # None when no report holds a run
    reference: TrainRun  # None when no report holds a run
    tolerances: Tolerances
    rows: list  # Row
    nodes: list  # Node
    runs: list = dataclasses.field(default_factory=list)  # the TrainRun of each row

    def status_counts(self):
        return {s: sum(n.status == s for n in self.nodes) for s in NODE_STATUSES}

    @property
    def passed(self):
        return all(r.passed for r in self.rows) and all(n.status == NODE_PASS for n in self.nodes)

    def verdict(self):
        failed = [r.label for r in self.rows if not r.passed]
        down = [f"{n.report} {n.status}" for n in self.nodes if n.status != NODE_PASS]
        problems = ([f"{len(failed)} of {len(self.rows)} runs outside tolerance or not converged: "
                     f"{', '.join(failed)}"] if failed else []) + (
            [f"{len(down)} of {len(self.nodes)} nodes not PASS: {', '.join(down)}"] if down else [])
        if problems:
            raise CheckFailed(f"compare failed: {'; '.join(problems)}")

    def to_dict(self):
        ref = self.reference
        return {"schema": COMPARE_SCHEMA, "config": self.config,
                "reference": ref and {"label": ref.label, "where": ref.where(), "device": ref["device"],
                                      "weights_sha256": ref["weights_sha256"], "predictions": ref["predictions"]},
                "tolerances": self.tolerances.to_dict(), "rows": [r.to_dict() for r in self.rows],
                "passed": self.passed, "nodes": [n.to_dict() for n in self.nodes],
                "status_counts": self.status_counts()}
