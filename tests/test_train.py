"""The training loop in this process (device from THEANO_FLAGS, cpu by default): divergence,
the loss history's sampling, and the digest of the final weights."""
import numpy as np
import pytest

from xor_gpu import train
from xor_gpu.config import TrainConfig


def test_divergence_stops_training(nan_weights):
    """NaN weights make every loss NaN: the loop must stop at the first sample, not report."""
    with pytest.raises(train.Diverged, match="loss became nan at step 0"):
        train.run(TrainConfig(steps=1000))


def test_divergence_exits_4_with_one_line(nan_weights, monkeypatch, capsys):
    from xor_gpu import cli

    monkeypatch.setenv("XOR_GPU_REEXEC", "1")  # no re-exec of the test process
    assert cli.main(["train", "--steps", "100"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xor-gpu: error: diverged: loss became nan")


@pytest.mark.parametrize("steps, every, samples", [(1, 1, 1), (499, 1, 499), (500, 1, 500), (60000, 120, 500),
                                                   (60001, 120, 501)])
def test_history_samples_the_loss_before_steps_0_every_2every(steps, every, samples):
    assert train.history_every(steps) == every
    assert len(range(0, steps, every)) == samples


def test_a_short_run_reports_its_weights_and_their_digest():
    result = train.run(TrainConfig(steps=20))
    w1, w2 = (np.asarray(result.final_weights[k], dtype=np.float32) for k in ("W1", "W2"))
    assert w1.shape == (2, 3) and w2.shape == (3, 1)
    assert result.weights_sha256 == train.weights_digest([w1, w2])
    assert len(result.loss_history) == 20 and result.loss_history[0] > result.loss_history[-1]


def test_the_digest_sees_one_bit_and_the_order():
    w1, w2 = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), np.ones((3, 1), dtype=np.float32)
    base = train.weights_digest([w1, w2])
    flipped = w1.copy()
    flipped.view(np.uint32)[0, 0] ^= 1  # the last bit of one weight
    assert train.weights_digest([flipped, w2]) != base
    assert train.weights_digest([w2, w1]) != base
    assert train.weights_digest([w1.copy(), w2.copy()]) == base
