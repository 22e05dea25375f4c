"""The training loop: one compiled step per call, a sampled loss history, timings.

Returns a plain TrainResult; printing and files are the report module's job.
"""
import dataclasses
import hashlib
import math
import time

import numpy as np

from xor_gpu import backend, compile_cache
from xor_gpu.config import TARGETS, is_converged
from xor_gpu.errors import Diverged
from xor_gpu.model import XorModel

HISTORY_POINTS = 500  # a loss sample every steps/500 steps: enough for a curve, small JSON


@dataclasses.dataclass
class TrainResult:
    config: object
    device_active: str
    device_name: str
    predictions: list
    final_loss: float
    history_every: int
    loss_history: list
    compile_seconds: float
    first_step_seconds: float
    train_seconds: float
    new_compiled_modules: int
    ops: list
    versions: dict
    final_weights: dict  # {"W1": nested lists, "W2": ...} in floatX, as floats
    weights_sha256: str  # of the final weights' bytes: equal digests = bitwise-equal training

    @property
    def steps_per_second(self):
        """Steady-state speed: the steps after the first, which also built kernels."""
        steps, seconds = self.config.steps - 1, self.train_seconds
        if steps == 0:
            steps, seconds = 1, self.first_step_seconds
        return steps / seconds if seconds > 0 else float("inf")

    @property
    def converged(self):
        return is_converged(self.predictions)


def history_every(steps):
    return max(1, steps // HISTORY_POINTS)


def final_loss(predictions):
    """Sum of squared errors of the final predictions, in float64."""
    return float(np.sum((np.asarray(TARGETS, dtype=np.float64) - np.asarray(predictions, dtype=np.float64)) ** 2))


def weights_digest(weights):
    """sha256 over the weights' raw bytes in order (W1 then W2), C order, their own dtype."""
    digest = hashlib.sha256()
    for w in weights:
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


def run(config, progress=None):
    """Train on config.device. `progress(n)` is called as steps complete (a tqdm update).

    Raises backend.DeviceError before any step when the device is not the one asked for,
    and Diverged at the first non-finite loss.
    """
    theano = backend.import_theano(config.device, config.floatx)
    modules_before = compile_cache.count_compiled_modules()
    start = time.perf_counter()
    model = XorModel(theano, config)
    compile_seconds = time.perf_counter() - start
    ops = backend.verify_graph(model.train, config.device)
    new_modules = compile_cache.count_compiled_modules() - modules_before
    active, name = backend.active_device(theano)

    every = history_every(config.steps)
    history = []
    step = 0
    first_step_seconds = 0.0
    start = time.perf_counter()
    while step < config.steps:
        chunk = min(every, config.steps - step)
        loss = model.train()  # the loss before this step is the sample for this chunk
        if step == 0:
            # The first call also builds the device's kernels (PoCL, NVRTC): timed apart.
            first_step_seconds = time.perf_counter() - start
            start = time.perf_counter()
        if not math.isfinite(loss):
            raise Diverged(f"diverged: loss became {float(loss)} at step {step}; lower --lr (now {config.lr})")
        history.append(float(loss))
        for _ in range(chunk - 1):
            loss = model.train()
        step += chunk
        if progress:
            progress(chunk)
    train_seconds = time.perf_counter() - start
    weights = model.final_weights()
    predictions = [float(p) for p in np.asarray(model.predict()).ravel()]
    if not all(math.isfinite(p) for p in predictions) or not math.isfinite(loss):
        raise Diverged(f"diverged: training ended with a non-finite loss or prediction; lower --lr (now {config.lr})")

    return TrainResult(
        config=config,
        device_active=active,
        device_name=name,
        predictions=predictions,
        final_loss=final_loss(predictions),
        history_every=every,
        loss_history=history,
        compile_seconds=compile_seconds,
        first_step_seconds=first_step_seconds,
        train_seconds=train_seconds,
        new_compiled_modules=new_modules,
        ops=ops,
        versions=backend.versions(theano),
        final_weights={"W1": weights[0].tolist(), "W2": weights[1].tolist()},
        weights_sha256=weights_digest(weights),
    )
