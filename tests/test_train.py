"""The training loop in this process (device from THEANO_FLAGS, cpu by default): steps per
call, divergence, the loss history's sampling, and the digest of the final weights."""
import numpy as np
import pytest

from xor_gpu import origin, train
from xor_gpu.config import TrainConfig
from xor_gpu.engines import C_CHAIN_STEPS_PER_CALL, CPU_STEPS_PER_CALL, MAX_SCAN, PROGRESS_CALLS
from xor_gpu.results.runs import Difference, TrainRun, check_same_config
from xor_gpu.results.train_report import TrainReport
from xorlib import train_report

# Short runs that converge like the seed config (lr x steps = 600); 2,000 steps sample the
# loss every 4 steps, so 7 steps per call cut samples at every offset and leave 5 steps over.
SHORT = {"steps": 2000, "lr": 0.3}


@pytest.mark.parametrize("steps, k, expected", [(2000, 10, [(10, 200, 2)]), (2003, 10, [(10, 200, 2), (1, 3, 1)]),
                                                (5, 10, [(1, 5, 1)]), (60000, 1, [(1, 60000, 1)]),
                                                (10, 10, [(10, 1, 1)]), (60000, 10, [(10, 6000, 10)]),
                                                (60000, 100, [(100, 600, 20)])])
def test_plan_runs_whole_calls_then_the_rest_one_step_per_call(steps, k, expected):
    """(steps per call, calls, stride): each call returns the cost of every stride-th step,
    which holds every step the history samples (every 4th of 2,000 steps, 120th of 60,000)."""
    assert train.plan(steps, k) == expected


@pytest.mark.parametrize("steps, k, expected", [(60000, 600, [(600, 100, 120)]),
                                                (60001, 600, [(600, 100, 120), (1, 1, 1)]),
                                                (2003, 20, [(20, 100, 4), (3, 1, 1)]),
                                                (2010, 20, [(20, 100, 4), (10, 1, 2)]),
                                                (5, 10, [(5, 1, 1)])])
def test_after_a_scan_the_rest_is_one_call(steps, k, expected):
    assert train.plan(steps, k, "scan") == expected


@pytest.mark.parametrize("steps, k", [(2003, 7), (2000, 10), (60000, 100), (60001, 600), (997, 6), (12345, 50)])
@pytest.mark.parametrize("loop", ["chain", "scan"])
def test_every_sampled_step_is_a_returned_cost(steps, k, loop):
    """The steps whose costs the calls return hold every step the history samples."""
    returned, start = set(), 0
    for k_call, calls, stride in train.plan(steps, k, loop):
        for _ in range(calls):
            returned.update(range(start, start + k_call, stride))
            start += k_call
    assert start == steps
    assert set(range(0, steps, train.history_every(steps))) <= returned


def test_any_steps_per_call_trains_bitwise_like_one_step_per_call():
    """The seed's loop (1), the CPU default, and 7 (a remainder, samples inside calls) give
    the same loss history, predictions and weights, bit for bit; reports of them compare equal."""
    ks = [1, CPU_STEPS_PER_CALL, 7]
    results = {k: train.run(TrainConfig(**SHORT, steps_per_call=k)) for k in ks}
    seed = results[1]
    assert len(seed.loss_history) == 500 and seed.converged
    reports = {k: TrainReport.of(r, origin.here()) for k, r in results.items()}
    for k in ks[1:]:
        r = results[k]
        assert r.config.steps_per_call == reports[k].config["steps_per_call"] == k
        assert r.loss_history == seed.loss_history
        assert r.predictions == seed.predictions
        assert r.final_weights == seed.final_weights and r.weights_sha256 == seed.weights_sha256
        check_same_config(TrainRun("1 step per call", reports[1]), [TrainRun(f"{k} steps per call", reports[k])])
        assert Difference.between(reports[1], reports[k]) == Difference(0.0, 0.0, True)


def test_fewer_steps_than_one_call_run_one_step_per_call():
    assert train.run(TrainConfig(steps=5, steps_per_call=10)).loss_history == \
        train.run(TrainConfig(steps=5, steps_per_call=1)).loss_history


def test_steps_per_second_leaves_out_the_first_call():
    result = train.run(TrainConfig(steps=100, steps_per_call=10))
    assert result.steps_per_second == pytest.approx(90 / result.train_seconds)


def test_the_default_steps_per_call_depends_on_the_device_and_the_engine():
    """One rule, the engine registry's (Engine.default_steps_per_call): a chain's steps on the
    CPU, 1 on GPUs; a scan's below."""
    assert TrainConfig().resolved().steps_per_call == CPU_STEPS_PER_CALL
    # GPUs: every step of a call builds its own kernels, and kernel launches bound the speed.
    assert TrainConfig(device="opencl0:0").resolved().steps_per_call == 1
    assert TrainConfig(device="cuda", steps_per_call=5).resolved().steps_per_call == 5
    assert TrainConfig(engine="pytensor").resolved().steps_per_call == C_CHAIN_STEPS_PER_CALL


@pytest.mark.parametrize("steps, k", [(60000, 600), (60001, 600), (2000, 20), (2003, 20), (150, 2), (99, 1), (1, 1),
                                      (10**8, 10**6), (10**9, 10**6)])
@pytest.mark.parametrize("engine, device", [("pytensor-numba", "cpu"), ("pytensor-jax", "cpu"), ("pytensor-jax", "cuda")])
def test_a_scan_trains_in_100_calls_of_whole_sampling_intervals(steps, k, engine, device):
    """A scan's length costs no compilation: the default is whole sampling intervals, the
    training in 100 calls (the progress bar's steps), at most MAX_SCAN steps per call."""
    assert TrainConfig(engine=engine, device=device, steps=steps).resolved().steps_per_call == k
    every = train.history_every(steps)
    assert k == MAX_SCAN or (k % every == 0 and steps // k <= PROGRESS_CALLS)


@pytest.mark.parametrize("k", [1, CPU_STEPS_PER_CALL, 7])
def test_divergence_stops_training(nan_weights, k):
    """NaN weights make every loss NaN: the loop must stop at the first sample, not report."""
    with pytest.raises(train.Diverged, match="loss became nan at step 0"):
        train.run(TrainConfig(steps=1000, steps_per_call=k))


def test_divergence_exits_4_with_one_line(nan_weights, monkeypatch, capsys):
    from xor_gpu import cli

    monkeypatch.setenv("XOR_GPU_REEXEC", "1")  # no re-exec of the test process
    assert cli.main(["train", "--steps", "100"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xor-gpu: error: diverged: loss became nan")


@pytest.mark.parametrize("k", [1, CPU_STEPS_PER_CALL])
def test_a_second_run_compiles_nothing_new(tmp_path, k):
    """The compile cache is warm: a repeat run, a new process with a hash seed of its own
    (nothing pins PYTHONHASHSEED), compiles zero new modules, for one step per call and for
    the default (whose 53 steps also take the one-step function for the 3 left over)."""
    args = ["--steps", "53", "--steps-per-call", str(k)]
    train_report(tmp_path, *args, name="a.json")
    assert train_report(tmp_path, *args, name="b.json")["new_compiled_modules"] == 0


@pytest.mark.parametrize("steps, every, samples", [(1, 1, 1), (499, 1, 499), (500, 1, 500), (60000, 120, 500),
                                                   (60001, 120, 501)])
def test_history_samples_the_loss_before_steps_0_every_2every(steps, every, samples):
    assert train.history_every(steps) == every
    result = train.run(TrainConfig(steps=steps))
    assert result.history_every == every and len(result.loss_history) == samples


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


def test_seeds_share_one_compilation_and_train_bitwise_like_their_own_runs():
    """A sweep starts each seed from its own weights in the same compiled functions: the same
    bits as training that seed alone, and nothing is compiled after the first seed."""
    sweep = train.run_seeds(TrainConfig(**SHORT), [7, 1234, 3])
    assert [r.config.seed for r in sweep] == [7, 1234, 3]
    assert [r.compile_seconds > 0 for r in sweep] == [True, False, False]
    for result in (sweep[1], sweep[0]):  # also the first seed, trained before any other
        alone = train.run(TrainConfig(**SHORT, seed=result.config.seed))
        assert result.weights_sha256 == alone.weights_sha256 and result.loss_history == alone.loss_history
    assert len({r.weights_sha256 for r in sweep}) == 3
