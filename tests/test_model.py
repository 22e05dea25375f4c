"""The k-steps-per-call function against k calls of the seed's one-step function, in this
process on the CPU (the device env checks its own device through the CLI, tests/test_device.py)."""
import numpy as np
import pytest

from xor_gpu import backend, devices
from xor_gpu.config import TrainConfig
from xor_gpu.model import XorModel


@pytest.fixture(scope="module")
def theano():
    return backend.import_theano(devices.THE_CPU, "float32")


@pytest.mark.parametrize("k, stride", [(2, 1), (7, 1), (6, 3), (6, 6)])
def test_k_steps_per_call_are_k_seed_steps_bit_for_bit(theano, k, stride):
    """Three calls of k steps (whose buffers live from call to call) against 3k calls of the
    seed's function: the same costs in the same order (every stride-th), and the same weights."""
    config = TrainConfig(lr=0.3)
    seed, chained = XorModel(theano, config), XorModel(theano, config)
    one_step, k_steps = seed.steps_function(1), chained.steps_function(k, stride)
    seed_costs = np.array([one_step()[0] for _ in range(3 * k)])
    costs = np.concatenate([k_steps() for _ in range(3)])
    assert costs.dtype == seed_costs.dtype == np.float32
    assert costs.tobytes() == seed_costs[::stride].tobytes()
    # The costs not returned are not computed: one reduction (the cost's sum) per returned cost.
    sums = [n for n in k_steps.maker.fgraph.apply_nodes if "Sum" in str(n.op) or "CAReduce" in str(n.op)]
    assert len(sums) == k // stride
    # Each copy updates the weights in place, as the one-step function does: no copy of them.
    ops = [str(n.op) for n in k_steps.maker.fgraph.apply_nodes]
    assert ops.count("Gemm{inplace}") == 2 * k and "Gemm{no_inplace}" not in ops
    assert seed_costs[0] > seed_costs[-1]  # it trained
    for a, b in zip(seed.final_weights(), chained.final_weights()):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_one_step_per_call_is_the_seed_graph(theano):
    """One call per step compiles the seed's function as Theano compiles it by default (the
    reference for speed and results): its update of W1 and W2 is done in place."""
    ops = [str(node.op) for node in XorModel(theano, TrainConfig()).steps_function(1).maker.fgraph.toposort()]
    assert ops.count("Gemm{inplace}") == 2 and not any("MakeVector" in op for op in ops)

