"""benchmarks/bench.py's plumbing: a short real run, its JSON, skipped references, bad input.
(The benchmark itself runs in `tox -e bench`, not in CI: too slow and noisy.)"""
import json
import os
import statistics
import subprocess
import sys

import pytest

from xorlib import HAS_CUDA_GPU

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "bench.py")


def bench(*args):
    return subprocess.run([sys.executable, BENCH, *map(str, args)], capture_output=True, text=True)


def test_variants_run_interleaved_and_write_the_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = bench("--rounds", 1, "--steps", 200, "--only", "baseline,default,oracle-f32", "--json", out)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["schema"] == "xor_gpu.bench/1" and data["steps"] == 200 and data["skipped"] == {}
    runs = {name: v["runs"] for name, v in data["variants"].items()}
    assert list(runs) == ["baseline", "default", "oracle-f32"] and all(len(r) == 1 for r in runs.values())
    base, default = data["variants"]["baseline"], data["variants"]["default"]
    assert base["ratio"] == {"steps_per_s": 1.0, "wall_s": 1.0}
    assert default["ratio"]["steps_per_s"] == statistics.median(
        d["steps_per_s"] / b["steps_per_s"] for d, b in zip(runs["default"], runs["baseline"]))
    for variant in (base, default):
        assert variant["median"]["new_modules"] == 0  # the warm-up round filled the compile cache
        assert all(r["wall_s"] > r["train_s"] > 0 for r in variant["runs"])
    assert runs["baseline"][0]["steps_per_call"] == 1
    # the same math everywhere: the default trainer and the numpy oracle in float32
    assert default["max_abs_prediction_diff_to_baseline"] < 1e-6
    assert data["variants"]["oracle-f32"]["max_abs_prediction_diff_to_baseline"] < 1e-6
    # round-robin, the first variant rotating from round to round (the first round warms up)
    order = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("[")]
    assert order == ["oracle-f32", "baseline", "default", "baseline", "default", "oracle-f32"]
    assert "max|dpred|" in proc.stdout and "0.5870" in proc.stdout  # the table and the predictions


def test_a_reference_its_python_cannot_import_is_skipped_with_the_reason(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", bare], check=True)
    out = tmp_path / "bench.json"
    proc = bench("--rounds", 1, "--steps", 10, "--only", "jax,torch", "--ref-python", bare / "bin" / "python",
                 "--json", out)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["variants"] == {} and sorted(data["skipped"]) == ["jax", "torch"]
    assert "No module named 'jax'" in data["skipped"]["jax"] and "torch: skipped" in proc.stdout


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    for args, fragment in ((["--only", "baseline,nope"], "unknown variant nope"),
                           (["--rounds", "0"], "at least 1"),
                           (["--json", tmp_path / "missing" / "b.json"], "b.json")):
        proc = bench(*args, "--json", tmp_path / "b.json") if args[0] != "--json" else bench(*args)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bench.py: error: ") and fragment in lines[0], lines
        assert os.listdir(tmp_path) == []


@pytest.mark.engines
def test_an_engine_at_one_step_per_call_beside_its_default(tmp_path):
    """PyTensor's variants come in pairs, the default's ratio taken to one step per call;
    their predictions agree (goals); the cuda pair is skipped, with the reason, without a GPU."""
    out = tmp_path / "bench.json"
    names = ["pytensor-jax-per-call", "pytensor-jax-default", *([] if HAS_CUDA_GPU else ["pytensor-jax-cuda-default"])]
    proc = bench("--rounds", 1, "--steps", 200, "--only", ",".join(names), "--json", out)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    per_call, default = (data["variants"][n] for n in names[:2])
    assert default["base"] == "pytensor-jax-per-call" and default["ratio"]["steps_per_s"] > 0
    assert [r["steps_per_call"] for r in per_call["runs"] + default["runs"]] == [1, 2]  # 200 steps in 100 calls
    goals = {g["goal"]: g for g in data["goals"]}
    assert goals["pytensor-jax-default's predictions within 1e-06 of pytensor-jax-per-call's"]["met"]
    assert "pytensor-jax default >= 50x its one step per call" in goals
    if not HAS_CUDA_GPU:
        assert "JAX found no GPU" in data["skipped"]["pytensor-jax-cuda-default"]


SHARED_CACHE = os.path.join(os.path.dirname(BENCH), "shared_cache.py")


def test_the_shared_cache_benchmark_runs_an_array_and_writes_its_json(tmp_path):
    """benchmarks/shared_cache.py's plumbing on an array of two: its ratios, and the structural
    fact behind them, one compilation in all."""
    out = tmp_path / "shared.json"
    proc = subprocess.run([sys.executable, SHARED_CACHE, "--part", "array", "--tasks", "2", "--rounds", "1",
                           "--json", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (array,) = json.loads(out.read_text(encoding="utf-8"))["array"]
    (measured,) = array["rounds"]
    assert array["tasks"] == 2 and len(measured["cold"]["runs"]) == len(measured["warm"]["runs"]) == 2
    assert array["new_modules_cold"] == array["new_modules_lone_cold"] and array["new_modules_cold"][0] > 0
    assert array["bitwise_equal"] is True
    assert array["median"]["cold_over_bound"] == measured["cold_over_bound"]
    assert abs(measured["cold_over_bound"] - measured["cold"]["wall_s"] / measured["bound_s"]) <= 0.01
    assert proc.stdout.startswith("[2 tasks, round 1] lone warm ") and "array of 2 (medians of 1 rounds)" in proc.stdout
    bad = subprocess.run([sys.executable, SHARED_CACHE, "--part", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown nope" in bad.stderr

