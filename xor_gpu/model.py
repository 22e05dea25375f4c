"""The seed's network as a Theano graph: 2 inputs, one sigmoid hidden layer, sigmoid output.

No biases, squared-error cost, plain gradient descent through theano.grad. Unlike the
tutorial's code, every tensor is created in floatX: the seed's int64 X and y upcast the
graph to float64 and break the updates under floatX=float32.

One SGD step is built once, symbolically (`sgd_step`). One step per call is the seed's
function, compiled as Theano compiles it by default. k steps per call chain k copies of the
step as Theano optimized it (once, from placeholder weights), each copy reading the weights
the one before wrote: the same arithmetic, so the result is bitwise the same, while Python's
overhead per call is paid once per k steps. Optimizing the chain itself instead would cost
Theano's optimizer seconds, growing faster than k.
"""
import sys

import numpy as np

from xor_gpu.config import INPUTS, TARGETS


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

    `theano` is the engine's module (theano or pytensor: the same API for all used here),
    `mode` its compile mode (None: the module's default)."""

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

    def steps_function(self, k):
        """A compiled call of k SGD steps that updates W1 and W2 and returns the k costs,
        each the cost before its step (indexable: a list for k = 1, a vector otherwise)."""
        theano = self._theano
        if k == 1:
            cost, *new = sgd_step(theano, self.X, self.y, self.W1, self.W2, self.lr)
            return theano.function([], [cost], updates=list(zip((self.W1, self.W2), new)), name="xor_train",
                                   mode=self._mode)

        from theano.gof.graph import clone_get_equiv

        step = self._optimized_step()
        weights, costs, shared = [self.W1, self.W2], [], {}
        for _ in range(k):
            memo = {**shared, **dict(zip(step.inputs, [*weights, self.X, self.y]))}
            equiv = clone_get_equiv(step.inputs, step.outputs, copy_inputs=False, copy_orphans=False, memo=memo)
            cost, *weights = (equiv[v] for v in step.outputs)
            costs.append(cost)
            shared = shared or {v: equiv[v] for v in _weight_free(step)}
        # The copies are optimized already, and merged where they would repeat work (above):
        # optimizing or merging the chain again costs more than k times one step. Buffers are
        # kept from call to call (allow_gc=False), not allocated again in every call, which
        # would cost about as much as this network's arithmetic.
        mode = theano.compile.get_default_mode().clone(link_kwargs={"allow_gc": False}, optimizer=None)
        return theano.function([], _stacked(theano, costs), updates=list(zip((self.W1, self.W2), weights)),
                               mode=mode, accept_inplace=True, name=f"xor_train_{k}")

    def _optimized_step(self):
        """The step's graph as Theano optimizes it (not linked: no kernels are built for it),
        inputs W1, W2, X, y. Its new weights keep the shared variables' type, so on a GPU they
        stay on the device from one step to the next; its inplace ops destroy only buffers
        of their own step (inputs and outputs are protected), so the copies can be chained."""
        if self._step is None:
            theano = self._theano
            placeholders = [w.type() for w in (self.W1, self.W2)]
            cost, *new = sgd_step(theano, self.X, self.y, *placeholders, self.lr)
            outputs = [cost, *(w.type.filter_variable(n) for w, n in zip((self.W1, self.W2), new))]
            inputs = [theano.In(v) for v in (*placeholders, self.X, self.y)]
            self._step = theano.compile.FunctionMaker(inputs, outputs, theano.compile.get_default_mode()).fgraph
        return self._step

    def start_from(self, seed):
        """Set W1 and W2 to `seed`'s initial weights; compiled functions stay valid."""
        for shared, w in zip((self.W1, self.W2), initial_weights(self._hidden, seed)):
            shared.set_value(w.astype(self._floatx))

    def final_weights(self):
        """(W1, W2) as numpy arrays in floatX, copied from the device."""
        return self.W1.get_value(), self.W2.get_value()


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
