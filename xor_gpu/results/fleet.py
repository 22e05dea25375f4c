"""`xor-gpu compare`'s result: every run against one reference (Row), every report given as a
node of the fleet (Node), and how alike runs and nodes are grouped when there are many."""
import dataclasses

from xor_gpu.devices import device
from xor_gpu.errors import CheckFailed, ConfigError
from xor_gpu.results.check import CHECK_STATUSES, FAILED, INTERRUPTED, PASSED, CheckSummary, read_log_header
from xor_gpu.results.doctor import CudaLibs
from xor_gpu.results.parity import Parity
from xor_gpu.results.runs import Difference, Tolerances, TrainRun
from xor_gpu.results import CHECK_SCHEMA, COMPARE_SCHEMA, PARITY_SCHEMA, RUN_SCHEMAS, TRAIN_SCHEMA, load
from xor_gpu.results.train_report import RunDevice, TrainReport


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
    return (row.device.active, row.device.name, row.weights_sha256, row.difference, row.converged, row.passed)


@dataclasses.dataclass
class Row:
    """compare: one run against the reference."""
    label: str
    where: str
    device: RunDevice
    predictions: dict
    weights_sha256: str
    converged: bool
    difference: Difference
    passed: bool

    @classmethod
    def of(cls, run, reference, tolerances):
        diff = Difference.between(reference.report, run.report)
        report = run.report
        return cls(run.label, run.where(), report.device, report.predictions, report.weights_sha256,
                   run.converged, diff, tolerances.admit(diff) and run.converged)

    def to_dict(self):
        return {"label": self.label, "where": self.where, "device": self.device.to_dict(),
                "predictions": self.predictions,
                "weights_sha256": self.weights_sha256, "converged": self.converged, **self.difference.to_dict(),
                "passed": self.passed}


def gpu_libraries(versions, cuda):
    """The GPU libraries a run used, in words: libgpuarray's NVRTC and cuBLAS (of `cuda`, a
    CudaLibs) for a run that loaded pygpu, else the JAX packages (jax, jaxlib, its CUDA plugin)
    its versions list; None when neither."""
    if "pygpu" in versions:
        found = [f"{label} {library.version}" for library, label in ((cuda.nvrtc, "NVRTC"), (cuda.cublas, "cuBLAS"))
                 if library]
        return ", ".join(found) or None
    return ", ".join(f"{name} {version}" for name, version in versions.items() if name.startswith("jax")) or None


@dataclasses.dataclass
class Node:
    """compare: one report given, seen as the machine that made it (read() makes it, by the
    report's schema; its runs are counted, not compared). nvrtc and cublas: the versions of
    those libgpuarray loaded (None for a run that did not load it); libraries: what the GPU run
    used, in words (gpu_libraries)."""
    report: str
    status: str  # NODE_STATUSES
    node: str = None
    device: str = None
    gpu: str = None
    driver: str = None
    nvrtc: str = None
    cublas: str = None
    failed_step: str = None
    reason: str = None
    libraries: str = None
    engine: str = None  # what trained: the check's or the train report's engine (None: not known)
    weights_sha256: str = None  # of its run on the device asked for (None: no such run)
    runs: int = 0  # training runs it holds (not in JSON: the rows are)

    # compare's JSON: every field but runs, in this order
    JSON = ("report", "node", "device", "gpu", "driver", "nvrtc", "cublas", "status", "failed_step", "reason",
            "libraries", "engine", "weights_sha256")

    def to_dict(self):
        return {k: getattr(self, k) for k in self.JSON}

    @classmethod
    def of_check(cls, path, summary):
        cuda = summary.cuda or CudaLibs()
        versions = summary.versions or {}
        requested = summary.device.requested
        gpu = _gpu(requested, summary.device.name)
        libgpuarray = "pygpu" in versions
        run = summary.runs.get(requested)
        return cls(report=path, status=NODE_OF_CHECK[summary.status],
                   node=summary.node or _host(summary.origin, summary.runs), device=requested, gpu=gpu,
                   driver=cuda.driver, nvrtc=libgpuarray and cuda.nvrtc and cuda.nvrtc.version or None,
                   cublas=libgpuarray and cuda.cublas and cuda.cublas.version or None,
                   failed_step=summary.failed_step, reason=summary.reason,
                   libraries=gpu_libraries(versions, cuda) if gpu else None, engine=summary.engine,
                   weights_sha256=run.weights_sha256 if run else None, runs=len(summary.runs))

    @classmethod
    def of_unfinished_check(cls, folder, log):
        """A check's folder without its summary, from its check.log's text: INTERRUPTED, saying so."""
        started, last = read_log_header(log), (log.strip().splitlines() or [""])[-1][:300]
        reason = ("no summary.json: the check ended without writing one (killed by SIGKILL, the out-of-memory "
                  "killer or a failed node), or it still runs" + (f"; its log ends: {last}" if last else ""))
        return cls(report=folder, status=NODE_OF_CHECK[INTERRUPTED], node=started.node, device=started.device,
                   reason=reason, engine=started.engine)

    @classmethod
    def of_parity(cls, path, parity):
        failed = next(iter(parity.failures.items()), None)
        reason = failed[1].of(failed[0]) if failed else next(iter(parity.problems()), None)
        names = [r.device.name for r in parity.runs.values() if not device(r.device.requested).is_cpu]
        return cls(report=path, status=NODE_OF_CHECK[PASSED if parity.passed else FAILED],
                   node=_host({}, parity.runs), device=",".join(parity.devices), gpu=names[0] if names else None,
                   failed_step=None if parity.passed else "parity", reason=reason, runs=len(parity.runs))

    @classmethod
    def of_train(cls, path, run):
        requested = run.device.requested
        return cls(report=path, status=NODE_OF_CHECK[PASSED if run.converged else FAILED],
                   node=_host(run.origin, {}), device=requested, gpu=_gpu(requested, run.device.name),
                   failed_step=None if run.converged else "train", reason=None if run.converged else "did not converge",
                   engine=run.engine, weights_sha256=run.weights_sha256, runs=1)


def read(path, data, log=None):
    """(its Node, its [TrainRun]) of a report given to compare (a dict of schema train, parity
    or check), read once; ConfigError for one that is none of them or is incomplete. `data`
    None: the folder of a check without its summary, whose check.log says `log`."""
    if data is None:
        return Node.of_unfinished_check(str(path), log), []
    schema, path = data["schema"], str(path)
    if schema == CHECK_SCHEMA:
        summary = CheckSummary.from_dict(data, path)
        return Node.of_check(path, summary), _labelled(path, summary.runs)
    if schema == PARITY_SCHEMA:
        try:
            parity = Parity.from_dict(data, path)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path}: not a complete {PARITY_SCHEMA} report ({exc!r})") from None
        return Node.of_parity(path, parity), _labelled(path, parity.runs)
    if schema == TRAIN_SCHEMA:
        run = TrainReport.from_dict(data, path)
        return Node.of_train(path, run), [TrainRun(path, run)]
    raise ConfigError(f"{path}: unknown schema {schema!r} (expected {', '.join(RUN_SCHEMAS[:-1])} "
                      f"or {RUN_SCHEMAS[-1]})")


def _labelled(path, runs):
    return [TrainRun(f"{path}[{name}]", run) for name, run in runs.items()]


def reference_run(path, label=None):
    """The one training run of a reference report."""
    _, runs = read(path, load(path))
    if len(runs) != 1:
        raise ConfigError(f"{label or path}: a reference must hold one training run, it holds {len(runs)}")
    return runs[0]


def _host(origin, runs):
    """Where a report was made: its own origin's host, else its first run's."""
    return (origin or next((r.origin for r in runs.values()), None) or {}).get("host")


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
                "reference": ref and {"label": ref.label, "where": ref.where(), "device": ref.report.device.to_dict(),
                                      "weights_sha256": ref.report.weights_sha256,
                                      "predictions": ref.report.predictions},
                "tolerances": self.tolerances.to_dict(), "rows": [r.to_dict() for r in self.rows],
                "passed": self.passed, "nodes": [n.to_dict() for n in self.nodes],
                "status_counts": self.status_counts()}
