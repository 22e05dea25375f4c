"""The train report (schema xor_gpu.train/1), typed, and `train --seeds`' report of one per
seed: made from a training's result, read from JSON (validated: ConfigError naming the
report for what a comparison needs and it lacks), written back as it was read."""
import dataclasses
import math

from xor_gpu.errors import ConfigError
from xor_gpu.problem import CONVERGENCE_MARGIN, INPUTS, ROWS, TARGETS, row_key
from xor_gpu.results import SEEDS_SCHEMA, TRAIN_SCHEMA, JsonObject, optional

CONFIG_FIELDS = ("floatx", "hidden", "lr", "steps", "seed")  # what makes runs comparable


def finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass
class RunDevice(JsonObject):
    requested: str = None  # as --device named it
    active: str = None  # what the engine used
    name: str = None  # the GPU's or the CPU's model


@dataclasses.dataclass
class NvrtcArch(JsonObject):
    """The architecture xor_gpu's NVRTC front gave NVRTC in full, where libgpuarray 0.7.6 cut
    it short (compute capability 10 and more: compute_100 arrives as compute_10)."""
    asked: str = None  # as libgpuarray passed it
    compiled_for: str = None  # what NVRTC got
    compilations: int = None  # how many compilations the front corrected


@dataclasses.dataclass
class BlasKernels(JsonObject):
    """The OpenBLAS kernels a run asked for (xor_gpu.host.openblas_kernels), the family as
    OpenBLAS names the kernels it runs once loaded."""
    family: str = None
    chosen_by: str = None


@dataclasses.dataclass
class Blas(JsonObject):
    """The BLAS behind a C engine (xor_gpu.host.blas_of): its link flags, the library loaded,
    OpenBLAS's own description and kernels; `problem` ([problem, fix], doctor's only) when the
    user's OPENBLAS_CORETYPE names kernels this CPU lacks."""
    ldflags: str = None
    library: str = None
    version: str = None
    kernels: BlasKernels = None  # absent from reports older than it
    problem: list = optional()  # doctor's, on such a CPU


@dataclasses.dataclass
class Cudnn(JsonObject):
    """What a CUDA run did with cuDNN (xor_gpu.backend.cudnn_of): Theano's dnn.enabled not
    False, a GpuDnn op in the compiled graph (absent from doctor's, which compiles nothing), and
    the cuDNN found here (library and version, None when none)."""
    enabled: bool = None
    used: bool = None
    library: str = None
    version: str = None


@dataclasses.dataclass
class LossHistory(JsonObject):
    every: int = None  # steps between samples
    values: list = None  # the loss before steps 0, every, 2 * every, ...


@dataclasses.dataclass
class CompileCache(JsonObject):
    """What a run did with the engine's compile cache (Theano's; xor_gpu/compile_cache.py)."""
    folder: str = None
    lock_wait_seconds: float = None  # waiting for other processes' compile locks
    events: list = None  # one line each: a damaged module rebuilt, a lock taken over, a long wait


@dataclasses.dataclass
class TrainReport(JsonObject):
    """One training run, as README.md's "JSON report" lists its keys, in their order. Nested
    records keep the keys of the module that makes them: config (TrainConfig's fields),
    versions, blas and cudnn (the engine's runtime), origin (xor_gpu/origin.py)."""
    schema: str = TRAIN_SCHEMA
    config: dict = None
    device: RunDevice = None
    floatX: str = None
    versions: dict = None
    blas: Blas = None
    cudnn: Cudnn = None  # None off CUDA; absent from reports older than it
    nvrtc_arch: NvrtcArch = None  # None but on compute capability 10 and more; absent from older reports
    origin: dict = None
    predictions: dict = None  # by row, as problem.ROWS names them
    targets: dict = None
    final_loss: float = None
    loss_history: LossHistory = None
    compile_seconds: float = None
    first_step_seconds: float = None
    train_seconds: float = None
    steps_per_second: float = None
    new_compiled_modules: int = None  # None: not counted (PyTensor's engines)
    compile_cache: CompileCache = None  # None: PyTensor's engines; absent from reports older than it
    ops: list = None
    convergence_margin: float = None
    converged: bool = None
    weights_sha256: str = None
    final_weights: dict = None

    @classmethod
    def of(cls, result, origin):
        """The report of a training's result (xor_gpu.train.TrainResult), made at `origin`."""
        c = result.config
        return cls(
            config=c.to_dict(), device=RunDevice(requested=c.device.name, active=result.device_active,
                                                 name=result.device_name),
            floatX=c.floatx, versions=result.versions, blas=result.blas, cudnn=result.cudnn,
            nvrtc_arch=result.nvrtc_arch, origin=origin,
            predictions={row_key(r): p for r, p in zip(INPUTS, result.predictions)},
            targets={row_key(r): t for r, t in zip(INPUTS, TARGETS)}, final_loss=result.final_loss,
            loss_history=LossHistory(every=result.history_every, values=result.loss_history),
            compile_seconds=result.compile_seconds, first_step_seconds=result.first_step_seconds,
            train_seconds=result.train_seconds, steps_per_second=result.steps_per_second,
            new_compiled_modules=result.new_compiled_modules, compile_cache=result.compile_cache, ops=result.ops,
            convergence_margin=CONVERGENCE_MARGIN, converged=result.converged, weights_sha256=result.weights_sha256,
            final_weights=result.final_weights)

    @classmethod
    def from_dict(cls, data, label="report"):
        """ConfigError, naming `label`, for a report that lacks what runs are compared by."""
        if not isinstance(data, dict) or data.get("schema") != TRAIN_SCHEMA:
            raise ConfigError(f"{label}: not a {TRAIN_SCHEMA} run")
        predictions = data.get("predictions")
        if not isinstance(predictions, dict) or any(k not in predictions for k in ROWS):
            raise ConfigError(f"{label}: predictions missing (need rows {', '.join(ROWS)})")
        bad = [k for k in ROWS if not finite(predictions[k])]
        if bad:
            raise ConfigError(f"{label}: prediction for row {bad[0]} is {predictions[bad[0]]!r}, not a finite number")
        history = data.get("loss_history")
        values = history.get("values") if isinstance(history, dict) else None
        if not isinstance(values, list) or not values or not all(finite(v) for v in values):
            raise ConfigError(f"{label}: loss_history missing or not finite")
        config = data.get("config")
        if not isinstance(config, dict) or any(f not in config for f in CONFIG_FIELDS):
            raise ConfigError(f"{label}: config missing (need {', '.join(CONFIG_FIELDS)})")
        if not isinstance(data.get("weights_sha256"), str):
            raise ConfigError(f"{label}: weights_sha256 missing (a report older than this version)")
        if not isinstance(data.get("converged"), bool) or not isinstance(data.get("device"), dict):
            raise ConfigError(f"{label}: converged or device missing")
        return super().from_dict(data)

    @property
    def engine(self):
        """The engine that trained; None in a report older than engines (Theano's)."""
        return self.config.get("engine")

    @property
    def steps(self):
        return self.config["steps"]

    @property
    def seed(self):
        return self.config["seed"]

    def comparable_config(self):
        """The config fields that must agree for runs to be compared (CONFIG_FIELDS)."""
        return {f: self.config[f] for f in CONFIG_FIELDS}

    def config_mismatch(self, config):
        """(field, this run's value, config's) of the first field of CONFIG_FIELDS in which
        `config` (a dict of TrainConfig's fields) differs, or None."""
        return next(((f, self.config[f], config[f]) for f in CONFIG_FIELDS if self.config[f] != config[f]), None)


@dataclasses.dataclass
class SeedsReport(JsonObject):
    """`train --seeds` (schema xor_gpu.train-seeds/1): the train report of every seed."""
    schema: str = SEEDS_SCHEMA
    device: str = None
    seeds: list = None
    runs: dict = None  # the seed as text (a JSON key) -> TrainReport

    @classmethod
    def of(cls, results, origin):
        """Of the TrainResult of each seed, in order."""
        return cls(device=results[0].config.device.name, seeds=[r.config.seed for r in results],
                   runs={str(r.config.seed): TrainReport.of(r, origin) for r in results})

    @classmethod
    def from_dict(cls, data, label="report"):
        report = super().from_dict(data)
        report.runs = {seed: TrainReport.from_dict(run, f"{label}[seed {seed}]") for seed, run in data["runs"].items()}
        return report


def read(data, label="report"):
    """A report a `xor-gpu train` child wrote: a TrainReport, or a SeedsReport with --seeds."""
    return (SeedsReport if isinstance(data, dict) and data.get("schema") == SEEDS_SCHEMA else TrainReport).from_dict(
        data, label)
