"""The numpy float64 oracle, checked on its own (finite differences) and then used as the
reference for the Theano float32 trajectory, in this process on the CPU."""
import numpy as np
import pytest

from xor_gpu import model, oracle, train
from xor_gpu.config import TrainConfig

# float32 Theano vs float64 numpy after 60,000 steps, measured: 5.7e-6 on predictions,
# 8.5e-5 relative on the loss history.
ORACLE_ATOL = 1e-4
ORACLE_RTOL_LOSS = 1e-3


# The seed's first draws, numpy.random.RandomState(1234).uniform(-1, 1): W1 (2 x 3) first,
# then W2 (3 x 1). Literal values, so a changed draw order in the model or the oracle fails.
SEED_W1 = [[-0.6169610992422154, 0.24421754207966373, -0.12454452198577104],
           [0.5707171674275384, 0.559951616237607, -0.45481478943471676]]
SEED_W2 = [[-0.4470714897138066], [0.6037443550700385], [0.9162787073674103]]


@pytest.mark.parametrize("draw", [model.initial_weights, oracle.initial_weights], ids=["model", "oracle"])
def test_initial_weights_are_the_seed_draws(draw):
    w1, w2 = draw(3, 1234)
    assert w1.tolist() == SEED_W1 and w2.tolist() == SEED_W2


def test_the_oracle_shares_no_code_with_the_model():
    import ast
    import inspect

    imported = {node.module for node in ast.walk(ast.parse(inspect.getsource(oracle)))
                if isinstance(node, ast.ImportFrom)}
    assert not any(m.startswith("xor_gpu") for m in imported), imported
    x, y = model.data()
    assert np.array_equal(oracle.X, x) and np.array_equal(oracle.Y, y)


def test_oracle_gradients_match_finite_differences():
    x, y = oracle.X, oracle.Y
    w1, w2 = oracle.initial_weights(5, 7)
    g1, g2 = oracle.gradients(x, y, w1, w2)
    eps = 1e-6
    for w, g, which in ((w1, g1, 0), (w2, g2, 1)):
        numeric = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            plus, minus = w.copy(), w.copy()
            plus[idx] += eps
            minus[idx] -= eps
            args_p = (plus, w2) if which == 0 else (w1, plus)
            args_m = (minus, w2) if which == 0 else (w1, minus)
            numeric[idx] = (oracle.cost(y, oracle.forward(x, *args_p)[1])
                            - oracle.cost(y, oracle.forward(x, *args_m)[1])) / (2 * eps)
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-9)


@pytest.fixture(scope="module")
def seed_run():
    """The default config trained by Theano (float32, CPU) and by the oracle."""
    config = TrainConfig()
    result = train.run(config)
    every = train.history_every(config.steps)
    return result, oracle.train(config, record_every=every)


def test_theano_float32_matches_oracle_predictions(seed_run):
    result, (predictions, _, final_loss) = seed_run
    np.testing.assert_allclose(result.predictions, predictions, rtol=0, atol=ORACLE_ATOL)
    assert result.final_loss == pytest.approx(final_loss, rel=ORACLE_RTOL_LOSS)


def test_theano_float32_matches_oracle_loss_history(seed_run):
    result, (_, losses, _) = seed_run
    assert len(result.loss_history) == len(losses) == 500
    np.testing.assert_allclose(result.loss_history, losses, rtol=ORACLE_RTOL_LOSS)


def test_seed_config_converges_on_cpu(seed_run):
    result, _ = seed_run
    assert result.converged
    assert result.device_active == "cpu"
    assert "Gpu" not in "".join(result.ops)


def test_oracle_detects_a_wrong_learning_rate(seed_run):
    """The comparison has teeth: a 1% change of lr moves predictions by ~9e-4, 9x ORACLE_ATOL."""
    result, _ = seed_run
    predictions, _, _ = oracle.train(TrainConfig(lr=0.0101))
    assert np.max(np.abs(np.asarray(result.predictions) - predictions)) > 5 * ORACLE_ATOL

