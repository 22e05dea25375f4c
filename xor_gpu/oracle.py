"""An independent oracle: the same network in plain numpy, float64, gradients by hand.

It shares no code with the Theano model: its own XOR table, its own draw of the initial
weights (the tests pin the seed's first draws as literal values, so a changed draw order
in either shows up), its own forward pass and chain rule. A wrong gradient, a wrong draw
order or a silently changed graph in the model then shows up as a difference.
"""
import numpy as np

X = np.array([[1, 0], [0, 0], [0, 1], [1, 1]], dtype=np.float64)
Y = np.array([[1], [0], [1], [0]], dtype=np.float64)


def initial_weights(hidden, seed):
    """The tutorial's draws: W1 (2 x hidden) first, then W2 (hidden x 1), uniform(-1, 1)."""
    rng = np.random.RandomState(seed)
    return rng.uniform(-1, 1, (2, hidden)), rng.uniform(-1, 1, (hidden, 1))


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


def train(config, record_every=1, dtype=np.float64):
    """Run config.steps steps; returns (predictions (4,), losses sampled every `record_every`
    steps starting at step 0, final loss). Each loss is the cost before that step, as in
    the Theano train function. `dtype` float32 gives the same math in single precision."""
    x, y = X.astype(dtype), Y.astype(dtype)
    w1, w2 = (w.astype(dtype) for w in initial_weights(config.hidden, config.seed))
    lr = dtype(config.lr)
    losses = []
    for step in range(config.steps):
        if step % record_every == 0:
            losses.append(cost(y, forward(x, w1, w2)[1]))
        g1, g2 = gradients(x, y, w1, w2)
        w1 = w1 - lr * g1
        w2 = w2 - lr * g2
    output = forward(x, w1, w2)[1]
    return output.ravel().astype(np.float64), np.array(losses), cost(y, output)
