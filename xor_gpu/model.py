"""The seed's network as a Theano graph: 2 inputs, one sigmoid hidden layer, sigmoid output.

No biases, squared-error cost, plain gradient descent through theano.grad. Unlike the
tutorial's code, every tensor is created in floatX: the seed's int64 X and y upcast the
graph to float64 and break the updates under floatX=float32.
"""
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


class XorModel:
    """Shared variables and the two compiled functions: `train()` (one step, returns the
    cost before the step) and `predict()` (outputs for the four rows)."""

    def __init__(self, theano, config):
        T = theano.tensor
        floatx = theano.config.floatX
        x, y = data()
        w1, w2 = initial_weights(config.hidden, config.seed)
        self.X = theano.shared(x.astype(floatx), name="X")
        self.y = theano.shared(y.astype(floatx), name="y")
        self.W1 = theano.shared(w1.astype(floatx), name="W1")
        self.W2 = theano.shared(w2.astype(floatx), name="W2")

        hidden = T.nnet.sigmoid(T.dot(self.X, self.W1))
        output = T.nnet.sigmoid(T.dot(hidden, self.W2))
        cost = T.sum((self.y - output) ** 2)
        lr = np.asarray(config.lr, dtype=floatx)  # a floatX constant keeps the update in floatX
        updates = [(w, w - lr * theano.grad(cost, w)) for w in (self.W1, self.W2)]

        self.train = theano.function([], cost, updates=updates, name="xor_train")
        self.predict = theano.function([], output, name="xor_predict")

    def final_weights(self):
        """(W1, W2) as numpy arrays in floatX, copied from the device."""
        return self.W1.get_value(), self.W2.get_value()
