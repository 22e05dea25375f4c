"""The training loop: steps_per_call compiled steps per call, a sampled loss history, timings.

Returns a plain TrainResult, of which xor_gpu.results.train_report makes the report; its text
is xor_gpu.render's, its files xor_gpu.train_command's.
"""
import dataclasses
import hashlib
import math
import time

import numpy as np

from xor_gpu import engines
from xor_gpu.engines import history_every
from xor_gpu.errors import Diverged
from xor_gpu.model import XorModel
from xor_gpu.problem import TARGETS, is_converged


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
    first_step_seconds: float  # of the first call of each compiled function, which also built kernels
    train_seconds: float
    new_compiled_modules: int  # None: not counted (PyTensor's engines)
    compile_cache: object  # compile_cache.record(): its folder, lock waits, events; None: PyTensor's own
    ops: list
    versions: dict
    blas: object  # host.blas_of(): the Blas the CPU's BLAS calls went to
    cudnn: object  # backend.cudnn_of(): Cudnn, None off CUDA
    nvrtc_arch: object  # the runtime's: NvrtcArch, None below compute capability 10
    final_weights: dict  # {"W1": nested lists, "W2": ...} in floatX, as floats
    weights_sha256: str  # of the final weights' bytes: equal digests = bitwise-equal training

    @property
    def steps_per_second(self):
        """Steady-state speed: the steps of every call but the first of each compiled function,
        which also built kernels."""
        first = sum(k for k, _, _ in plan(self.config.steps, self.config.steps_per_call,
                                           engines.get(self.config.engine).loop))
        steps, seconds = self.config.steps - first, self.train_seconds
        if steps == 0:
            steps, seconds = first, self.first_step_seconds
        return steps / seconds if seconds > 0 else float("inf")

    @property
    def converged(self):
        return is_converged(self.predictions)


def final_loss(predictions):
    """Sum of squared errors of the final predictions, in float64."""
    return float(np.sum((np.asarray(TARGETS, dtype=np.float64) - np.asarray(predictions, dtype=np.float64)) ** 2))


def weights_digest(weights):
    """sha256 over the weights' raw bytes in order (W1 then W2), C order, their own dtype."""
    digest = hashlib.sha256()
    for w in weights:
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


def plan(steps, steps_per_call, loop="chain"):
    """[(steps per call, calls, stride)]: whole calls of steps_per_call, then the rest: one
    step per call after a chain, so that no second long chain is compiled for it (the one-step
    graph is small), one call after a scan (its graph is one step whatever its length).

    A call returns the cost before every stride-th of its steps only: every step the history
    samples, as stride divides the distance from a call's first step to the next sample (the
    calls of a group start at multiples of stride, and samples lie at multiples of
    history_every), and in a chain the costs not returned are not computed."""
    every = history_every(steps)
    calls, rest = divmod(steps, steps_per_call)
    groups = [(steps_per_call, calls, 0), (rest, 1, calls * steps_per_call) if loop == "scan"
              else (1, rest, calls * steps_per_call)]
    return [(k, n, math.gcd(k, every, start)) for k, n, start in groups if n and k]


def run(config, progress=None):
    """Train on config.device. `progress(n)` is called as steps complete (a tqdm update).

    Raises DeviceError before any step when the device is not the one asked for,
    and Diverged at the first non-finite sampled loss.
    """
    return run_seeds(config, [config.seed], progress)[0]


def run_seeds(config, seeds, progress=None):
    """One TrainResult per seed, in order. The seeds share one compilation: each starts from
    its own initial weights in the same compiled functions, which is bitwise the same as a
    process of its own (tests/test_train.py), at a fraction of the cost."""
    config = config.replace(seed=seeds[0]).resolved()
    runtime = engines.get(config.engine).start(config.device, config.floatx)
    modules_before = runtime.compiled_modules()
    start = time.perf_counter()
    loop = engines.get(config.engine).loop
    with runtime.compiling():  # the model's predict() and the steps' functions, in one go
        model = XorModel(runtime.module, config, runtime.mode)
        calls = [(model.steps_function(k, stride, loop), k, n, stride)
                 for k, n, stride in plan(config.steps, config.steps_per_call, loop)]
    compile_seconds = time.perf_counter() - start
    ops = [runtime.verify_graph(function) for function, *_ in calls][0]
    # Theano's compile cache is counted; PyTensor's caches are its own (None: not counted).
    new_modules = runtime.compiled_modules() - modules_before if runtime.counts_compiled_modules else None
    active, name = runtime.active_device()
    results = []
    for seed in seeds:
        model.start_from(seed)
        result = _train(model, calls, config.replace(seed=seed), progress)
        runtime.verify_weights((model.W1, model.W2))
        results.append(TrainResult(
            **result, device_active=active, device_name=name, compile_seconds=compile_seconds,
            new_compiled_modules=new_modules, ops=ops, versions=runtime.versions(), blas=runtime.blas(),
            cudnn=runtime.cudnn(ops), nvrtc_arch=runtime.nvrtc_arch(),
            compile_cache=runtime.compile_cache()))
        compile_seconds, new_modules = 0, 0 if runtime.counts_compiled_modules else None  # paid by the first seed
    return results


def _train(model, calls, config, progress):
    """Run the compiled calls from the model's current weights: the fields of a TrainResult
    that belong to this training."""
    every = history_every(config.steps)
    history = []
    step = done = 0  # steps run; steps told to `progress`
    first_call_seconds = 0.0
    start = time.perf_counter()
    for function, k, n, stride in calls:
        for call in range(n):
            called = time.perf_counter()
            costs = function()  # costs[j]: the loss before step `step + j * stride`
            if call == 0:
                # A function's first call also builds the device's kernels (PoCL, NVRTC) or
                # compiles it (Numba, JAX): timed apart.
                first_call_seconds += time.perf_counter() - called
            first = -step % every  # the first sampled step of this call, as an offset
            if first < k:
                costs = np.asarray(costs).ravel()  # one transfer from the device for the call's samples
                for j in range(first, k, every):
                    loss = float(costs[j // stride])
                    if not math.isfinite(loss):
                        raise Diverged(f"diverged: loss became {loss} at step {step + j} (seed {config.seed}); "
                                       f"lower --lr (now {config.lr})")
                    history.append(loss)
                if progress:
                    progress(step + k - done)
                    done = step + k
            step += k
    train_seconds = time.perf_counter() - start - first_call_seconds
    if progress and done < step:
        progress(step - done)
    weights = model.final_weights()
    predictions = [float(p) for p in np.asarray(model.predict()).ravel()]
    if not all(math.isfinite(p) for p in predictions) or not math.isfinite(np.asarray(costs).ravel()[-1]):
        raise Diverged(f"diverged: training ended with a non-finite loss or prediction (seed {config.seed}); "
                       f"lower --lr (now {config.lr})")

    return dict(
        config=config,
        predictions=predictions,
        final_loss=final_loss(predictions),
        history_every=every,
        loss_history=history,
        first_step_seconds=first_call_seconds,
        train_seconds=train_seconds,
        final_weights={"W1": weights[0].tolist(), "W2": weights[1].tolist()},
        weights_sha256=weights_digest(weights),
    )
