"""Engines: Theano and PyTensor's three backends behind `--engine` and `parity --runs`.

Input checks run in Theano's envs. The tests marked `engines` run in the pytensor env
(numpy 2), where Theano's runs go to the cpu env's Python (XOR_GPU_THEANO_PYTHON): each
PyTensor backend trains the seed config within 1e-6 of Theano's committed reference, and
parity across the engines passes. The 20-seed sweep over every engine is in
tests/test_device.py (opencl env).
"""
import json
import os
import sys

import pytest

from xor_gpu import engines
from xor_gpu.compare import builtin_reference_path
from xor_gpu.results.runs import Difference
from xor_gpu.results.train_report import TrainReport
from xorlib import one_line_error, run_cli, train_report

PYTENSOR_ENGINES = ["pytensor", "pytensor-numba", "pytensor-jax"]


@pytest.mark.parametrize("args, fragment", [
    (["train", "--engine", "pytensorr"], "unknown engine 'pytensorr': choose one of theano, pytensor"),
    (["train", "--engine", "pytensor", "--device", "opencl0:0"], "engine pytensor cannot run on opencl0:0"),
    (["train", "--engine", "pytensor-numba", "--device", "cuda"], "engine pytensor-numba cannot run on cuda"),
    (["train", "--engine", "pytensor", "--steps-per-call", "1001"], "steps_per_call must be between 1 and 1000"),
    (["train", "--engine", "pytensor-jax", "--steps-per-call", "1000001"],
     "steps_per_call must be between 1 and 1000000"),
    (["parity", "--runs", ""], "each run is ENGINE:DEVICE"),
    (["parity", "--runs", "theano:cpu"], "parity needs at least two runs"),
    (["parity", "--runs", "theano:cpu,pytensor"], "each run is ENGINE:DEVICE"),
    (["parity", "--runs", "theano:cpu,theano:cpu"], "theano:cpu is given twice"),
    (["parity", "--runs", "theano:cpu,pytensor:opencl0:0"], "engine pytensor cannot run on opencl0:0"),
    (["parity", "--runs", "theano:cpu,jax:cpu"], "unknown engine 'jax'"),
    (["parity", "--runs", "pytensor-jax:cpu,theano:cpu", "--steps-per-call", "5000"],
     "steps_per_call must be between 1 and 1000, got 5000"),
    (["parity", "--runs", "theano:cpu,pytensor:cpu", "--devices", "cpu,cuda"], "not allowed with argument"),
])
def test_bad_engine_input_exits_2_and_writes_nothing(tmp_path, args, fragment):
    proc = run_cli(*args, "--json", tmp_path / "r.json")
    one_line_error(proc, 2, fragment)
    assert os.listdir(tmp_path) == []


def test_an_engine_without_its_environment_exits_3_naming_how_to_install_it(tmp_path):
    """Theano's envs cannot import PyTensor: with no PyTensor Python named, or a wrong one."""
    for value, fragment in (("", "engine {} is not installed in this Python"),
                            (str(tmp_path), f"engine {{}} is not installed: XOR_GPU_PYTENSOR_PYTHON={tmp_path} "
                                            "is not a Python"),
                            (sys.executable, f"XOR_GPU_PYTENSOR_PYTHON={sys.executable} cannot import xor_gpu and "
                                             "pytensor (no module named pytensor)")):
        env = {"XOR_GPU_PYTENSOR_PYTHON": value}
        proc = run_cli("train", "--engine", "pytensor", "--json", tmp_path / "r.json", env=env)
        one_line_error(proc, 3, fragment.format("pytensor"))
        assert "tox -e pytensor" in proc.stderr
        proc = run_cli("parity", "--runs", "theano:cpu,pytensor-jax:cpu", "--steps", "10", env=env)
        one_line_error(proc, 3, fragment.format("pytensor-jax"))
        proc = run_cli("check", "--engine", "pytensor-numba", "--device", "cpu", "--out", tmp_path / "out", env=env)
        one_line_error(proc, 3, fragment.format("pytensor-numba"))
        assert not (tmp_path / "r.json").exists() and not (tmp_path / "out").exists()


@pytest.mark.engines
@pytest.mark.parametrize("engine", PYTENSOR_ENGINES)
def test_each_pytensor_backend_matches_theanos_reference(tmp_path, engine):
    """The seed config on the CPU, float32: within 1e-6 of Theano's committed reference
    (measured: 6e-8 to 1.2e-7), on the backend asked for."""
    out = tmp_path / "r.json"
    run_cli("train", "--engine", engine, "--json", out, check=0)
    report = json.loads(out.read_text())
    with open(builtin_reference_path(), encoding="utf-8") as f:
        reference = json.load(f)
    diff = Difference.between(TrainReport.from_dict(reference), TrainReport.from_dict(report))
    assert report["config"]["engine"] == engine and report["converged"]
    assert diff.max_abs_prediction_diff <= 1e-6 and diff.max_rel_loss_diff <= 1e-4, diff
    # The run was refused unless compiled by the backend asked for (pytensor_backend.verify_graph).
    assert report["versions"]["pytensor"] == "3.0.7"
    assert {"pytensor": "numpy", "pytensor-numba": "numba", "pytensor-jax": "jaxlib"}[engine] in report["versions"]
    print(f"{engine}: {diff}, {report['steps_per_second']:,.0f} steps/s")


@pytest.mark.engines
@pytest.mark.parametrize("engine", PYTENSOR_ENGINES)
def test_many_steps_per_call_agree_with_the_engines_own_one_step_per_call(tmp_path, engine):
    """The default (a chain or a scan of many steps per call) on the seed config, and 7 steps
    per call on a short one (a remainder, samples inside calls), against the engine's own
    one step per call: predictions within 1e-6, the same sampled loss history within 1e-6.
    A chain is the step's own compiled code, K times: bitwise equal by construction. A scan is
    compiled anew by Numba or JAX (measured: bitwise equal too, printed)."""
    short = ["--steps", "2003", "--lr", "0.3"]
    for args, k in (([], None), (short, "7")):
        many = train_report(tmp_path, "--engine", engine, *args, *(["--steps-per-call", k] if k else []),
                            name="many.json")
        one = train_report(tmp_path, "--engine", engine, *args, "--steps-per-call", "1", name="one.json")
        assert one["config"]["steps_per_call"] == 1 and many["config"]["steps_per_call"] > 1
        assert {**many["config"], "steps_per_call": 1} == one["config"]
        diff = Difference.between(TrainReport.from_dict(one), TrainReport.from_dict(many))
        assert len(many["loss_history"]["values"]) == len(one["loss_history"]["values"])
        assert diff.max_abs_prediction_diff <= 1e-6 and diff.max_rel_loss_diff <= 1e-6, diff
        if engines.get(engine).loop == "chain":
            assert diff.bitwise_equal
        print(f"{engine} {many['config']['steps_per_call']} steps per call, {args or 'seed config'}: {diff}")


@pytest.mark.engines
def test_pytensor_jax_without_a_gpu_exits_3_with_the_cause(tmp_path):
    """JAX would quietly run on the CPU: a cuda run must be refused instead."""
    proc = run_cli("train", "--engine", "pytensor-jax", "--device", "cuda", "--steps", "10",
                   "--json", tmp_path / "r.json")
    one_line_error(proc, 3, "device cuda is not usable by pytensor-jax: JAX found no GPU")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.engines
def test_parity_across_engines_runs_each_in_its_own_python(tmp_path):
    """From PyTensor's env, Theano's run goes to Theano's Python: every engine on the CPU
    agrees with Theano, the seed config, within the tolerance."""
    out = tmp_path / "p.json"
    proc = run_cli("parity", "--runs", "theano:cpu,pytensor:cpu,pytensor-numba:cpu,pytensor-jax:cpu",
                   "--json", out, check=0)
    data = json.loads(out.read_text())
    assert data["devices"] == ["cpu", "pytensor:cpu", "pytensor-numba:cpu", "pytensor-jax:cpu"]
    assert data["passed"] and data["runs"]["cpu"]["versions"]["theano"] == "1.0.5"
    assert all(data["runs"][k]["versions"]["pytensor"] == "3.0.7" for k in data["devices"][1:])
    assert max(d["max_abs_prediction_diff"] for d in data["differences"].values()) <= 1e-6
    print(proc.stdout)


@pytest.mark.engines
def test_check_on_a_pytensor_engine_passes_against_theanos_reference(tmp_path):
    """`check --engine pytensor-numba`: converged, two runs bitwise identical, and within the
    tolerance of the reference Theano made (the CPU needs no parity step against itself)."""
    out = tmp_path / "check"
    run_cli("check", "--engine", "pytensor-numba", "--device", "cpu", "--out", out, check=0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] and summary["config"]["engine"] == "pytensor-numba"
    assert [s["status"] for s in summary["steps"]] == ["passed", "passed", "passed", "skipped", "passed"]
    reference = summary["steps"][-1]["differences"]["cpu"]
    assert reference["max_abs_prediction_diff"] <= 1e-6 and not reference["bitwise_equal"]


@pytest.mark.engines
def test_a_checks_plot_names_the_engine_that_ran(tmp_path, monkeypatch):
    """A check of another engine than Theano says which in its figures: the curves of
    check.png are `pytensor-jax:cpu`, as `parity --runs` names runs, and so is its title."""
    from xor_gpu import check, plots
    from xor_gpu.config import TrainConfig

    drawn = {}
    monkeypatch.setattr(plots, "plot_runs", lambda path, runs, title, **kw: drawn.update(
        {os.path.basename(path): (list(runs), title)}))
    check.main(TrainConfig(engine="pytensor-jax"), str(tmp_path / "check"))
    assert drawn == {"check.png": (["pytensor-jax:cpu"], "pytensor-jax:cpu check against the reference")}
