"""The seed's network as a Theano graph: 2 inputs, one sigmoid hidden layer, sigmoid output.

No biases, squared-error cost, plain gradient descent through theano.grad. Unlike the
tutorial's code, every tensor is created in floatX: the seed's int64 X and y upcast the
graph to float64 and break the updates under floatX=float32. `theano` is the engine's
module: theano or pytensor, the same API for all used here.

One SGD step is built once, symbolically (`sgd_step`). One step per call is the seed's
function, compiled as the engine compiles it by default. K steps per call are either

- a chain (Theano, PyTensor's C backend): K copies of the step as the engine optimized it
  (once, from placeholder weights), each copy reading the weights the one before wrote: the
  same arithmetic, so the result is bitwise the same, while Python's overhead per call is
  paid once per K steps. Optimizing the chain itself instead would cost the optimizer
  seconds, growing faster than K. Theano keeps the chain on every device, measured against
  one theano.scan of K steps (benchmarks/theano_scan.py; figures in benchmarks/README.md):
  Theano 1.0.5's C loop for scan does not compile on Python 3.11, so its scan runs a Python
  loop: 77-93k steps/s on the CPU against the chain's 468k (K=10), 6.5-8.4k on CUDA against
  13.7k, and on OpenCL that loop fails.
- a scan (PyTensor's Numba and JAX backends): one `scan` over K steps, which Numba and JAX
  compile into one loop of native code; its graph is one step, whatever K.

Either way a call returns the costs the loss history samples, every `stride`-th step's.
"""
import sys

import numpy as np

from xor_gpu.problem import INPUTS, TARGETS


def initial_weights(hidden, seed):
    """W1 (2 x hidden) then W2 (hidden x 1), uniform(-1, 1), in the seed's draw order, float64."""
    rng = np.random.RandomState(seed)
    w1 = rng.uniform(-1, 1, (2, hidden))
    w2 = rng.uniform(-1, 1, (hidden, 1))
    return w1, w2


def data():
    """X (4 x 2) and y (4 x 1) as float64; callers cast to their precision."""
    return np.array(INPUTS, dtype=np.float64), np.array(TARGETS, dtype=np.float64).reshape(-1, 1)


def forward(T, X, w1, w2):
    """The network's outputs for the rows of X (T: theano.tensor or pytensor.tensor)."""
    sigmoid = T.nnet.sigmoid if hasattr(T, "nnet") else T.sigmoid  # where each engine keeps it
    hidden = sigmoid(T.dot(X, w1))
    return sigmoid(T.dot(hidden, w2))


def sgd_step(theano, X, y, w1, w2, lr):
    """One gradient step from weights (w1, w2): [the cost before the step, new w1, new w2]."""
    cost = theano.tensor.sum((y - forward(theano.tensor, X, w1, w2)) ** 2)
    return [cost, *(w - lr * theano.grad(cost, w) for w in (w1, w2))]


class XorModel:
    """Shared variables, `predict()` (outputs for the four rows) and `steps_function(k)`.

    `theano` is the engine's module, `mode` its compile mode (None: the module's default)."""

    def __init__(self, theano, config, mode=None):
        self._theano, self._mode = theano, mode
        floatx = theano.config.floatX
        x, y = data()
        w1, w2 = initial_weights(config.hidden, config.seed)
        self._hidden, self._floatx = config.hidden, floatx
        self.X = theano.shared(x.astype(floatx), name="X")
        self.y = theano.shared(y.astype(floatx), name="y")
        self.W1 = theano.shared(w1.astype(floatx), name="W1")
        self.W2 = theano.shared(w2.astype(floatx), name="W2")
        self.lr = np.asarray(config.lr, dtype=floatx)  # a floatX constant keeps the update in floatX
        self.predict = theano.function([], forward(theano.tensor, self.X, self.W1, self.W2), name="xor_predict",
                                       mode=mode)
        self._step = None

    def steps_function(self, k, stride=1, loop="chain"):
        """A compiled call of k SGD steps that updates W1 and W2 and returns the costs before
        steps 0, stride, 2 stride, ... of the call (indexable: a list for k = 1, a vector
        otherwise): k chained copies of the step, or one scan (loop="scan")."""
        theano = self._theano
        if k == 1:
            cost, *new = sgd_step(theano, self.X, self.y, self.W1, self.W2, self.lr)
            return theano.function([], [cost], updates=list(zip((self.W1, self.W2), new)), name="xor_train",
                                   mode=self._mode)
        if loop == "scan":
            return self._scan_function(k, stride)

        step = self._optimized_step()
        weights, costs, shared = [self.W1, self.W2], [], {}
        for i in range(k):
            memo = {**shared, **dict(zip(step.inputs, [*weights, self.X, self.y]))}
            equiv = _graph(theano).clone_get_equiv(step.inputs, step.outputs, copy_inputs=False,
                                                   copy_orphans=False, memo=memo)
            cost, *weights = (equiv[v] for v in step.outputs)
            if i % stride == 0:  # the others are left out of the graph: not computed
                costs.append(cost)
            shared = shared or {v: equiv[v] for v in _weight_free(step)}
        # The copies are optimized already, and merged where they would repeat work (above):
        # optimizing or merging the chain again costs more than k times one step. Buffers are
        # kept from call to call (allow_gc=False), not allocated again in every call, which
        # would cost about as much as this network's arithmetic.
        mode = self._base_mode().clone(link_kwargs={"allow_gc": False}, optimizer=None)
        return theano.function([], _stacked(theano, costs), updates=list(zip((self.W1, self.W2), weights)),
                               mode=mode, accept_inplace=True, name=f"xor_train_{k}")

    def _scan_function(self, k, stride):
        """k steps as one scan: the weights carried from step to step, the cost before each
        step out. The scan's own steps are compiled in the engine's mode (by default PyTensor
        would compile them with its default backend, whatever the call's)."""
        theano = self._theano

        def step(w1, w2):
            cost, *new = sgd_step(theano, self.X, self.y, w1, w2, self.lr)
            return [*(w.type.filter_variable(n) for w, n in zip((w1, w2), new)), cost]

        w1s, w2s, costs = _scan(theano, step, [self.W1, self.W2, None], k, self._mode)
        return theano.function([], costs if stride == 1 else costs[::stride], name=f"xor_scan_{k}",
                               updates=[(self.W1, w1s[-1]), (self.W2, w2s[-1])], mode=self._mode)

    def _base_mode(self):
        return self._mode if self._mode is not None else self._theano.compile.get_default_mode()

    def _optimized_step(self):
        """The step's graph as Theano optimizes it (not linked: no kernels are built for it),
        inputs W1, W2, X, y. Its new weights keep the shared variables' type, so on a GPU they
        stay on the device from one step to the next. The weights are mutable, as in the
        one-step function, whose updates let the engine overwrite them (Gemm{inplace}): each
        copy then updates the weights the copy before wrote in place, after every read of them
        (the destroy handler orders that), and no copy of them is made. X and y are protected."""
        if self._step is None:
            theano = self._theano
            placeholders = [w.type() for w in (self.W1, self.W2)]
            cost, *new = sgd_step(theano, self.X, self.y, *placeholders, self.lr)
            outputs = [cost, *(w.type.filter_variable(n) for w, n in zip((self.W1, self.W2), new))]
            inputs = [*(theano.In(v, mutable=True) for v in placeholders), theano.In(self.X), theano.In(self.y)]
            self._step = theano.compile.FunctionMaker(inputs, outputs, self._base_mode()).fgraph
        return self._step

    def start_from(self, seed):
        """Set W1 and W2 to `seed`'s initial weights; compiled functions stay valid."""
        for shared, w in zip((self.W1, self.W2), initial_weights(self._hidden, seed)):
            shared.set_value(w.astype(self._floatx))

    def final_weights(self):
        """(W1, W2) as numpy arrays in floatX, copied from the device."""
        return self.W1.get_value(), self.W2.get_value()


def _graph(theano):
    """The module of clone_get_equiv, where each engine keeps it."""
    return theano.gof.graph if hasattr(theano, "gof") else theano.graph.basic


def _scan(theano, step, outputs_info, k, mode):
    """scan's outputs: PyTensor returns them alone when asked (and warns when not), Theano
    always with the updates."""
    if hasattr(theano, "gof"):
        return theano.scan(step, outputs_info=outputs_info, n_steps=k, mode=mode)[0]
    return theano.scan(step, outputs_info=outputs_info, n_steps=k, mode=mode, return_updates=False)


def _stacked(theano, costs):
    """The k costs as one vector, stacked where they were computed: on a GPU, one transfer
    to the host per call instead of one per step (each a wait for the device)."""
    gpu = sys.modules.get("theano.gpuarray.basic_ops")  # imported on GPU runs only
    if gpu is None or not all(c.owner and isinstance(c.owner.op, gpu.HostFromGpu) for c in costs):
        return theano.tensor.stack(costs)
    from theano.gpuarray.elemwise import GpuDimShuffle

    on_device = [GpuDimShuffle((), ("x",))(c.owner.inputs[0]) for c in costs]
    return gpu.host_from_gpu(gpu.GpuJoin()(0, *on_device))


def _weight_free(step):
    """The variables of the optimized step computed from X and y alone (X's transpose), none
    of them overwritten in place or a view of what is: one copy of them serves every step."""
    destroyed = {node.inputs[i] for node in step.apply_nodes
                 for i in sum(getattr(node.op, "destroy_map", {}).values(), [])}
    excluded, free = set(step.inputs[:2]) | destroyed, []
    for node in step.toposort():
        if excluded.intersection(node.inputs):
            excluded.update(node.outputs)
        else:
            free += [v for v in node.outputs if v not in excluded]
    return free
