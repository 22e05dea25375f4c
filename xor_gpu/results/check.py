"""`xor-gpu check`'s result: its status and steps (summary.json), and the summaries of earlier
releases read as this version words them."""
import dataclasses
import re
import signal

from xor_gpu.errors import EXIT_OK, CheckFailed, ConfigError, DeviceError, Interrupted
from xor_gpu.results.runs import Tolerances, held_runs
from xor_gpu.results.schemas import CHECK_SCHEMA, plain


# A check's own status (summary.json "status"), and each step's.
PASSED, FAILED, UNUSABLE, INTERRUPTED = "passed", "failed", "unusable", "interrupted"
CHECK_STATUSES = (PASSED, FAILED, UNUSABLE, INTERRUPTED)
SKIPPED = "skipped"


# check.log's first line, written as a check starts: what and where it checks. A check killed
# before its summary (SIGKILL, the out-of-memory killer, a failed node) leaves only its log;
# compare reads the node from this line.
_HEADER = re.compile(r"xor-gpu check: engine (?P<engine>\S+), device (?P<device>\S+), node (?P<node>\S+), ")


def log_header(engine, device, node, out, job=None):
    """check.log's first line; `job`: the batch job (host.batch_job()) the check runs in."""
    task = f" task {job['array_task_id']}" if job and "array_task_id" in job else ""
    return (f"xor-gpu check: engine {engine}, device {device}, node {node}, results in {out}"
            + (f", Slurm job {job['job_id']}{task}" if job else ""))


def read_log_header(log):
    """{"engine", "device", "node"} from a check.log's text, or {} when it does not start as one."""
    match = _HEADER.search(log.split("\n", 1)[0])
    return match.groupdict() if match else {}


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
                "summary": self.summary, **plain(self.figures)}

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
    runs: dict  # label -> TrainReport
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
                "origin": self.origin, "runs": plain(self.runs), **self._timing(), **self.extra}

    def _timing(self):
        if self.wall_seconds is None:  # a summary older than these fields, written back as read
            return {}
        return {"wall_seconds": self.wall_seconds, "overlap_seconds": self.overlap_seconds}

    @classmethod
    def from_dict(cls, data, path="summary"):
        """`path` names the summary in its errors, PATH[NAME] a run it holds."""
        runs = held_runs(path, data.get("runs"))
        status = data.get("status", status_of_exit(data.get("exit_status")))
        if status not in CHECK_STATUSES:
            raise ConfigError(f"{path}: unknown check status {status!r} (expected {', '.join(CHECK_STATUSES)})")
        try:
            steps = [Step.from_dict(s) for s in data["steps"]]
            failed = next((s.name for s in steps if s.status == FAILED), None)
            fields = {f.name for f in dataclasses.fields(cls)} | {"schema", "passed", "overlap_seconds"}
            return cls(status, data["exit_status"], data["config"], data["device"], steps,
                       Tolerances.from_dict(data["tolerances"]), data["reference"], data.get("versions") or {},
                       data.get("origin") or {}, runs,
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
