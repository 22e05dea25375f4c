"""An independent oracle: the same network in plain numpy, float64, gradients by hand.

It shares nothing with the Theano path but the initial weights, so a wrong gradient, a
wrong draw order or a silently changed graph in the Theano model shows up as a difference.
"""
import numpy as np

from xor_gpu.model import data, initial_weights


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def forward(x, w1, w2):
    hidden = sigmoid(x @ w1)
    return hidden, sigmoid(hidden @ w2)


def cost(y, output):
    return float(np.sum((y - output) ** 2))


def gradients(x, y, w1, w2):
    """d cost / d W1 and d cost / d W2 by the chain rule."""
    hidden, output = forward(x, w1, w2)
    d_out = -2.0 * (y - output) * output * (1.0 - output)  # through the output sigmoid
    g2 = hidden.T @ d_out
    d_hidden = (d_out @ w2.T) * hidden * (1.0 - hidden)  # through the hidden sigmoid
    g1 = x.T @ d_hidden
    return g1, g2


def train(config, record_every=1):
    """Run config.steps steps; returns (predictions (4,), losses sampled every `record_every`
    steps starting at step 0, final loss). Each loss is the cost before that step, as in
    the Theano train function."""
    x, y = data()
    w1, w2 = initial_weights(config.hidden, config.seed)
    losses = []
    for step in range(config.steps):
        if step % record_every == 0:
            losses.append(cost(y, forward(x, w1, w2)[1]))
        g1, g2 = gradients(x, y, w1, w2)
        w1 = w1 - config.lr * g1
        w2 = w2 - config.lr * g2
    output = forward(x, w1, w2)[1]
    return output.ravel(), np.array(losses), cost(y, output)
