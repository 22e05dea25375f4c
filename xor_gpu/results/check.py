"""`xor-gpu check`'s result: its status and steps (summary.json), and the summaries of earlier
releases read as this version words them."""
import dataclasses
import re
import signal

from xor_gpu.errors import EXIT_OK, CheckFailed, ConfigError, DeviceError, Interrupted
from xor_gpu.results.doctor import CudaLibs
from xor_gpu.results.runs import Tolerances, held_runs
from xor_gpu.results import CHECK_SCHEMA, JsonObject
from xor_gpu.results.train_report import Cudnn, RunDevice


# A check's own status (summary.json "status"), and each step's.
PASSED, FAILED, UNUSABLE, INTERRUPTED = "passed", "failed", "unusable", "interrupted"
CHECK_STATUSES = (PASSED, FAILED, UNUSABLE, INTERRUPTED)
SKIPPED = "skipped"


# check.log's first line, written as a check starts: what and where it checks. A check killed
# before its summary (SIGKILL, the out-of-memory killer, a failed node) leaves only its log;
# compare reads the node from this line.
_HEADER = re.compile(r"xor-gpu check: engine (?P<engine>\S+), device (?P<device>\S+), node (?P<node>\S+), ")


def log_header(engine, device, node, out, job=None):
    """check.log's first line; `job`: the batch job (origin.batch_job()) the check runs in."""
    task = f" task {job['array_task_id']}" if job and "array_task_id" in job else ""
    return (f"xor-gpu check: engine {engine}, device {device}, node {node}, results in {out}"
            + (f", Slurm job {job['job_id']}{task}" if job else ""))


@dataclasses.dataclass(frozen=True)
class LogHeader:
    """What check.log's first line says a check checks (None: a log that does not start as one)."""
    engine: str = None
    device: str = None
    node: str = None


def read_log_header(log):
    """The LogHeader of a check.log's text."""
    match = _HEADER.search(log.split("\n", 1)[0])
    return LogHeader(**match.groupdict()) if match else LogHeader()


def status_of_exit(exit_status):
    """A summary written before "status" existed: its status from its exit status."""
    return {EXIT_OK: PASSED, DeviceError.exit_status: UNUSABLE}.get(exit_status, FAILED)


@dataclasses.dataclass
class Step(JsonObject):
    """One step of a check. Its key figures (converged, differences, problems, ...) are written
    beside its fields, as `extra` is: `figures`."""
    name: str = None
    status: str = None  # PASSED, FAILED or SKIPPED
    started: float = None  # seconds after the check began (absent from summaries older than it)
    seconds: float = None
    summary: str = None

    @property
    def figures(self):
        return self.extra


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
class ReferenceUsed(JsonObject):
    """The reference a check held its runs against, and whether it applies to the check's config."""
    label: str = None
    weights_sha256: str = None
    origin: dict = None
    applies: bool = None


# What a summary needs to be read at all; the rest an earlier release may lack.
REQUIRED = ("exit_status", "config", "device", "steps", "tolerances", "reference")


@dataclasses.dataclass
class CheckSummary(JsonObject):
    """`xor-gpu check`'s summary.json, its keys in their order; `passed` and `overlap_seconds`
    are derived (from the status, from the steps). A summary of an earlier release gets the
    status, failed step, reason and node it did not write, as this version words them (and is
    written back as it was read)."""
    schema: str = CHECK_SCHEMA
    status: str = None
    passed: bool = dataclasses.field(init=False, default=None)
    exit_status: int = None
    failed_step: str = None
    reason: str = None
    interrupted_by: str = None
    node: str = None
    config: dict = None  # TrainConfig's fields
    device: RunDevice = None  # requested, and active and name once the device trained
    steps: list[Step] = None
    tolerances: Tolerances = None
    reference: ReferenceUsed = None
    versions: dict = None
    origin: dict = None
    runs: dict = None  # label -> TrainReport
    # From the check's start to its summary; the steps' seconds add up to it plus the overlap
    # (the CPU reference trained beside a GPU's runs), less what an interrupted step had run.
    wall_seconds: float = None
    overlap_seconds: float = dataclasses.field(init=False, default=None)
    cuda: CudaLibs = None  # a cuda check's NVIDIA stack (cuda_libs); absent elsewhere
    cudnn: Cudnn = None  # what libgpuarray's cuda check did with cuDNN; absent elsewhere

    def __post_init__(self):
        self.passed = self.status == PASSED
        self.overlap_seconds = overlap(self.steps or [])

    @property
    def engine(self):
        """The engine that trained; None in a summary older than engines (Theano's)."""
        return (self.config or {}).get("engine")

    def verdict(self):
        """Raise the error the check ended with, whose exit status is the summary's."""
        if self.status == INTERRUPTED:
            raise Interrupted(signal.Signals[self.interrupted_by])
        if self.status != PASSED:
            raise (DeviceError if self.status == UNUSABLE else CheckFailed)(self.reason)

    @classmethod
    def from_dict(cls, data, path="summary"):
        """`path` names the summary in its errors, PATH[NAME] a run it holds."""
        runs = held_runs(path, data.get("runs"))
        status = data.get("status", status_of_exit(data.get("exit_status")))
        if status not in CHECK_STATUSES:
            raise ConfigError(f"{path}: unknown check status {status!r} (expected {', '.join(CHECK_STATUSES)})")
        missing = [key for key in REQUIRED if key not in data]
        if missing:
            raise ConfigError(f"{path}: not a complete {CHECK_SCHEMA} summary (no {', '.join(missing)})")
        try:
            steps = [Step.from_dict(s) for s in data["steps"]]
            failed = next((s.name for s in steps if s.status == FAILED), None)
            summary = super().from_dict({  # what an earlier release did not write, as this one words it
                "status": status, "failed_step": failed, "reason": _old_reason(status, steps),
                "interrupted_by": None, "node": (data.get("origin") or {}).get("host"), **data})
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path}: not a complete {CHECK_SCHEMA} summary ({exc!r})") from None
        summary.runs = runs
        summary.absent = frozenset(f.name for f in cls.json_fields() if f.name not in data)  # written back as read
        return summary


def _old_reason(status, steps):
    """An older summary's reason, as this version words it: from its first failed step."""
    failed = next((s for s in steps if s.status == FAILED), None)
    if status == PASSED or failed is None:
        return None
    return failed.summary if status == UNUSABLE else f"check failed at {failed.name}: {failed.summary}"
