"""`xor-gpu compare`: reports made elsewhere, held against a reference. Real reports from real
runs, then edited copies of them for every kind of bad input."""
import json
import os
import pathlib
import platform
import signal
import socket
import subprocess
import sys

import pytest

from xorlib import HAS_CUDA_GPU, one_line_error, run_cli, train_report
from xor_gpu import compare, host, render_compare
from xor_gpu.results.parity import Parity
from xor_gpu.results.runs import Difference, Tolerances
from xor_gpu.results.train_report import BlasKernels, TrainReport

DATA = pathlib.Path(__file__).parent / "data" / "v0.1.0"  # reports of the previous release
H200 = pathlib.Path(__file__).parent / "data" / "h200-2026-12-04"  # checks run on an NVIDIA H200 node

SHORT = ("--steps", "2000", "--lr", "0.3")  # converges like the seed config (lr x steps = 600)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Two honest CPU runs of the same short config from separate processes, and a seed-config run."""
    folder = tmp_path_factory.mktemp("reports")
    a = train_report(folder, *SHORT, name="a.json")
    b = train_report(folder, *SHORT, name="b.json")
    seed = train_report(folder, name="seed.json")
    return folder, a, b, seed


def _write(folder, name, data):
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_honest_reports_from_different_processes_pass_and_are_bitwise_equal(reports, tmp_path):
    folder, *_ = reports
    out, png = tmp_path / "c.json", tmp_path / "c.png"
    proc = run_cli("compare", folder / "a.json", folder / "b.json", "--json", out, "--plot", png, check=0)
    result = json.loads(out.read_text())
    assert result["schema"] == "xor_gpu.compare/1" and result["passed"] is True
    assert result["reference"]["label"].endswith("a.json")
    (row,) = result["rows"]
    assert row["bitwise_equal"] is True and row["max_abs_prediction_diff"] == 0.0 and row["converged"]
    assert result["nodes"] == [
        {"report": str(folder / name), "node": socket.gethostname(), "device": "cpu", "gpu": None, "driver": None,
         "nvrtc": None, "cublas": None, "status": "PASS", "failed_step": None, "reason": None, "libraries": None,
         "engine": "theano", "weights_sha256": row["weights_sha256"]}
        for name in ("a.json", "b.json")]
    assert result["status_counts"] == {"PASS": 2, "FAIL": 0, "UNUSABLE": 0, "INTERRUPTED": 0}
    assert proc.stdout.splitlines()[-1] == "compare: PASS"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_live_seed_run_matches_the_committed_reference(reports):
    """The cpu env's live run against the reference made in the pinned image."""
    folder, _, _, seed = reports
    proc = run_cli("compare", folder / "seed.json", "--reference", "builtin", check=0)
    assert proc.stdout.splitlines()[-1] == "compare: PASS"
    diff = Difference.between(compare.reference_of("builtin").report, TrainReport.from_dict(seed))
    assert diff.max_abs_prediction_diff <= compare.DEFAULT_ATOL
    print(f"live cpu run vs committed reference: {diff}")
    # With the pinned OpenBLAS kernels (every x86-64 CPU with AVX2 and FMA): the same bits.
    if seed["blas"]["kernels"] == {"family": host.OPENBLAS_KERNELS["x86_64"][0], "chosen_by": "xor_gpu"}:
        assert diff.bitwise_equal, (seed["blas"], seed["weights_sha256"])


def test_one_prediction_moved_by_2e_4_fails_with_exit_5(reports, tmp_path):
    folder, a, _, _ = reports
    moved = json.loads(json.dumps(a))
    moved["predictions"]["0,1"] += 2e-4
    path = _write(tmp_path, "moved.json", moved)
    proc = run_cli("compare", folder / "a.json", path, "--json", tmp_path / "c.json")
    one_line_error(proc, 5, "compare failed: 1 of 1 runs outside tolerance")
    assert proc.stdout.splitlines()[-1] == "fleet: 2 nodes: 2 PASS, 0 FAIL, 0 UNUSABLE, 0 INTERRUPTED"
    result = json.loads((tmp_path / "c.json").read_text())  # the verdict is still written
    (row,) = result["rows"]
    assert row["passed"] is False and row["bitwise_equal"] is True  # weights untouched, prediction edited
    assert row["max_abs_prediction_diff"] == pytest.approx(2e-4, rel=1e-3)


def test_parity_and_check_reports_are_read_run_by_run(reports, tmp_path):
    folder, a, b, _ = reports
    runs = {"cpu": TrainReport.from_dict(a), "cpu-again": TrainReport.from_dict(b)}
    parity = Parity(a["config"], ["cpu", "cpu-again"], Tolerances(), runs, {}).to_dict()
    check = {**json.loads((DATA / "check-cpu.json").read_text()), "runs": {"cpu": b}}  # a summary of 0.1.0
    result = compare.compare([str(_write(tmp_path, "p.json", parity)), str(_write(tmp_path, "s.json", check))])
    assert [r.label for r in result.rows] == [f"{tmp_path}/p.json[cpu-again]", f"{tmp_path}/s.json[cpu]"]
    assert all(r.difference.bitwise_equal for r in result.rows)


def _bad_inputs(folder, a, seed):
    nan = json.loads(json.dumps(a))
    nan["predictions"]["1,1"] = float("nan")
    missing = {k: v for k, v in a.items() if k != "predictions"}
    other_config = json.loads(json.dumps(a))
    other_config["config"]["hidden"] = 5
    text = json.dumps(a)
    return {
        "missing file": ([folder / "nope.json", folder / "a.json"], "no such file"),
        "not JSON": ([_write(folder, "x.txt", "hello"), folder / "a.json"], "not JSON"),
        "truncated JSON": ([_write(folder, "t.json", text[: len(text) // 2]), folder / "a.json"], "truncated JSON"),
        "foreign schema": ([_write(folder, "f.json", {"name": "something else"}), folder / "a.json"], "not an xor_gpu report"),
        "unknown schema": ([_write(folder, "u.json", {**a, "schema": "xor_gpu.train/9"}), folder / "a.json"],
                           "unknown schema 'xor_gpu.train/9'"),
        "different configs": ([folder / "a.json", _write(folder, "h.json", other_config)],
                              "reports of different configs: hidden is 3"),
        "seed against short": ([folder / "seed.json", folder / "a.json"], "lr is 0.01 in"),
        "NaN prediction": ([_write(folder, "n.json", nan), folder / "a.json"], "prediction for row 1,1 is nan"),
        "missing predictions": ([_write(folder, "m.json", missing), folder / "a.json"], "predictions missing"),
        "one report, no reference": ([folder / "a.json"], "one run and no reference"),
        "nested 100,000 deep": ([_write(folder, "d.json", "[" * 100_000 + "]" * 100_000), folder / "a.json"],
                                "not an xor_gpu report (JSON nested too deeply)"),
    }


@pytest.mark.parametrize("case", ["missing file", "not JSON", "truncated JSON", "foreign schema", "unknown schema",
                                  "different configs", "seed against short", "NaN prediction",
                                  "missing predictions", "one report, no reference", "nested 100,000 deep"])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(reports, tmp_path, case):
    folder, a, _, seed = reports
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a.json", "seed.json"):
        (bad / name).write_text((folder / name).read_text())
    paths, fragment = _bad_inputs(bad, a, seed)[case]
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli("compare", *paths, "--json", out / "c.json", "--plot", out / "c.png")
    one_line_error(proc, 2, fragment)
    assert os.listdir(out) == [] and proc.stdout == ""


def test_a_reference_of_another_config_is_refused(reports, tmp_path):
    folder, *_ = reports
    proc = run_cli("compare", folder / "a.json", "--reference", "builtin")
    one_line_error(proc, 2, "lr is 0.01 in builtin but 0.3 in")


def test_the_committed_reference_is_the_seed_config_made_in_the_image():
    import numpy as np

    from xor_gpu.config import TrainConfig
    from xor_gpu.train import weights_digest

    run = compare.reference_of("builtin")
    ref = run.report
    assert run.label == "builtin" and ref.schema == "xor_gpu.train/1" and run.converged is True
    assert ref.config_mismatch(TrainConfig().to_dict()) is None  # float32, 3 hidden, lr 0.01, 60,000 steps, seed 1234
    assert ref.device.active == "cpu" and ref.versions["theano"] == "1.0.5"
    assert ref.blas.kernels == BlasKernels(family=host.OPENBLAS_KERNELS["x86_64"][0], chosen_by="xor_gpu")
    assert ref.origin["package"]["kind"] == "image" and ref.origin["package"]["name"] == "xor-gpu:cpu"
    weights = [np.asarray(ref.final_weights[k], dtype=np.float32) for k in ("W1", "W2")]
    assert weights_digest(weights) == ref.weights_sha256
    assert len(ref.loss_history.values) == 500


def test_the_committed_aarch64_reference_is_the_seed_config_made_in_the_arm64_bundle():
    import numpy as np

    from xor_gpu.config import TrainConfig
    from xor_gpu.train import weights_digest

    run = compare.reference_of("builtin", "aarch64")
    ref = run.report
    assert run.label == "builtin" and run.converged is True and run.machine() == "aarch64"
    assert ref.config_mismatch(TrainConfig().to_dict()) is None and ref.device.active == "cpu"
    assert ref.blas.kernels == BlasKernels(family=host.OPENBLAS_KERNELS["aarch64"][0], chosen_by="xor_gpu")
    assert ref.origin["package"]["kind"] == "bundle"
    weights = [np.asarray(ref.final_weights[k], dtype=np.float32) for k in ("W1", "W2")]
    assert weights_digest(weights) == ref.weights_sha256


def _on(machine, report, folder, name):
    """A copy of `report` whose origin says it was made on `machine`."""
    data = json.loads(json.dumps(report))
    words = data["origin"]["os"].split("-")
    words[words.index("with") - 1] = machine
    data["origin"]["os"] = "-".join(words)
    return _write(folder, name, data)


def test_builtin_is_the_reference_of_the_architecture_the_runs_were_made_on(reports, tmp_path):
    """compare: the architecture every run names; runs of two architectures, or of one without a
    reference, are held against the x86-64 one. check: this machine's."""
    *_, seed = reports
    x86, arm = (compare.reference_of("builtin", m).report for m in ("x86_64", "aarch64"))
    assert x86.origin != arm.origin
    arm_run, x86_run, other = (_on(m, seed, tmp_path, f"{m}.json") for m in ("aarch64", "x86_64", "riscv64"))
    assert compare.compare([str(arm_run)], "builtin").reference.report.origin == arm.origin
    for paths in ([arm_run, x86_run], [x86_run], [other]):
        assert compare.compare([str(p) for p in paths], "builtin").reference.report.origin == x86.origin
    assert compare.builtin_reference_path() == compare.builtin_reference_path(platform.machine())


def test_check_holds_this_machines_runs_against_its_architectures_reference(monkeypatch):
    from xor_gpu import check
    from xor_gpu.config import TrainConfig

    monkeypatch.setattr(compare.platform, "machine", lambda: "aarch64")
    ref, applies = check.load_reference(TrainConfig(), compare.BUILTIN)
    assert applies and ref.report.origin == compare.reference_of("builtin", "aarch64").report.origin


# Where no CUDA GPU is, cuda is the unusable device of the contract; elsewhere an OpenCL
# platform that no machine has.
UNUSABLE = "opencl9:0" if HAS_CUDA_GPU else "cuda"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Two real checks, as two nodes of a fleet leave them: one passed (the seed config on the
    CPU), one whose device cannot be used (exit 3, with its summary)."""
    folder = tmp_path_factory.mktemp("fleet")
    run_cli("check", "--device", "cpu", "--out", folder / "passed", check=0)
    run_cli("check", "--device", UNUSABLE, "--out", folder / "unusable", check=3)
    return folder


def test_a_fleet_with_an_unusable_node_shows_both_rows_and_exits_5(fleet, tmp_path):
    passed, unusable = fleet / "passed" / "summary.json", fleet / "unusable" / "summary.json"
    out, png = tmp_path / "c.json", tmp_path / "c.png"
    proc = run_cli("compare", passed, unusable, "--reference", "builtin", "--json", out, "--plot", png)
    one_line_error(proc, 5, f"compare failed: 1 of 2 nodes not PASS: {unusable} UNUSABLE")
    result = json.loads(out.read_text())
    why = json.loads(unusable.read_text())["reason"]
    assert why.startswith(f"device {UNUSABLE} is not usable: ")
    assert [(n["report"], n["device"], n["status"], n["failed_step"], n["reason"]) for n in result["nodes"]] == [
        (str(passed), "cpu", "PASS", None, None), (str(unusable), UNUSABLE, "UNUSABLE", "doctor", why)]
    assert result["status_counts"] == {"PASS": 1, "FAIL": 0, "UNUSABLE": 1, "INTERRUPTED": 0}
    assert result["passed"] is False
    (row,) = result["rows"]  # the passed node's run, within tolerance of the committed reference
    assert row["label"] == f"{passed}[cpu]" and row["passed"] is True
    # The text shows both nodes, the unusable one with its reason, and counts them.
    assert any(str(unusable) in line and "UNUSABLE: " + why in line for line in proc.stdout.splitlines())
    assert proc.stdout.splitlines()[-1] == "fleet: 2 nodes: 1 PASS, 0 FAIL, 1 UNUSABLE, 0 INTERRUPTED"
    assert png.read_bytes()[:4] == b"\x89PNG"
    # The plot names the node without a run.
    fig = compare.plot(tmp_path / "again.png", compare.compare([str(passed), str(unusable)], "builtin"))
    marks = [t.get_text() for t in fig.findobj(lambda a: getattr(a, "get_gid", lambda: None)() == "no-run")]
    assert marks == [f"no run: {unusable}: UNUSABLE"]


def test_a_fleet_without_any_run_still_shows_its_nodes_and_exits_5(fleet, tmp_path):
    unusable = fleet / "unusable" / "summary.json"
    out = tmp_path / "c.json"
    proc = run_cli("compare", unusable, "--reference", "builtin", "--json", out)
    one_line_error(proc, 5, "1 of 1 nodes not PASS")
    result = json.loads(out.read_text())
    assert result["rows"] == [] and [n["status"] for n in result["nodes"]] == ["UNUSABLE"]
    assert proc.stdout.splitlines()[-1] == "fleet: 1 node: 0 PASS, 0 FAIL, 1 UNUSABLE, 0 INTERRUPTED"


def test_the_folder_of_a_check_killed_before_its_summary_is_a_node_saying_so(fleet, tmp_path):
    """Folders given (as the Slurm comparison gives them): a check SIGKILLed while it trains
    left its log but no summary; it is an INTERRUPTED node of its host and device, not a
    missing one, and the passed folder reads as its summary."""
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "xor_gpu", "check", "--device", "cpu", "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in proc.stderr:
        if "training the seed config" in line:
            break
    os.killpg(proc.pid, signal.SIGKILL)  # the check and its training, as the out-of-memory killer may
    proc.communicate()
    assert not (killed / "summary.json").exists()
    out = tmp_path / "c.json"
    done = run_cli("compare", fleet / "passed", killed, "--reference", "builtin", "--json", out)
    one_line_error(done, 5, f"compare failed: 1 of 2 nodes not PASS: {killed} INTERRUPTED")
    passed, node = json.loads(out.read_text())["nodes"]
    assert passed["report"] == str(fleet / "passed" / "summary.json") and passed["status"] == "PASS"
    assert (node["report"], node["node"], node["device"], node["engine"], node["status"]) == (
        str(killed), socket.gethostname(), "cpu", "theano", "INTERRUPTED")
    assert node["reason"].startswith("no summary.json: the check ended without writing one (killed by SIGKILL, ")
    assert node["reason"].endswith("training the seed config on cpu (60,000 steps) ..."), node["reason"]
    assert any(str(killed) in line and "INTERRUPTED: no summary.json" in line for line in done.stdout.splitlines())


def test_a_folder_that_is_no_checks_is_bad_input(tmp_path):
    proc = run_cli("compare", tmp_path, "--reference", "builtin")
    one_line_error(proc, 2, f"{tmp_path}: a folder without summary.json or check.log: not the folder of a check")


@pytest.mark.parametrize("status, step, node_status", [
    ("failed", "determinism", "FAIL"), ("interrupted", None, "INTERRUPTED"), ("passed", None, "PASS")])
def test_every_check_status_is_a_node_status(fleet, tmp_path, status, step, node_status):
    """A summary's own status decides its node's: a failed or interrupted check fails the fleet
    even when the runs it holds agree with the reference."""
    data = json.loads((fleet / "passed" / "summary.json").read_text())
    data.update(status=status, failed_step=step, reason=None if status == "passed" else f"it {status}")
    path = _write(tmp_path, "s.json", data)
    result = compare.compare([str(path)], "builtin")
    (node,) = result.to_dict()["nodes"]
    assert (node["status"], node["failed_step"], node["reason"]) == (
        node_status, step, None if status == "passed" else f"it {status}")
    assert result.passed is (status == "passed") and all(r.passed for r in result.rows)


def test_a_summary_with_an_unknown_status_is_bad_input(fleet, tmp_path):
    data = json.loads((fleet / "passed" / "summary.json").read_text())
    data["status"] = "exploded"
    path = _write(tmp_path, "s.json", data)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli("compare", path, "--reference", "builtin", "--json", out / "c.json", "--plot", out / "c.png")
    one_line_error(proc, 2, f"{path}: unknown check status 'exploded'")
    assert os.listdir(out) == [] and proc.stdout == ""


def test_a_fleet_with_a_real_cuda_13_node_beside_the_cpu_reference(tmp_path, monkeypatch):
    """The checks an NVIDIA H200 node wrote (driver 580, CUDA 13.0, NVRTC 13.0, cuBLAS 13.1;
    Theano from the offline bundle, and PyTensor's JAX engine): every run within tolerance of
    the committed CPU reference, none bitwise equal (GPU and CPU never are; that node's CPU ran
    OpenBLAS's Prescott kernels), and each node named with the GPU libraries it used."""
    monkeypatch.chdir(H200)
    out = tmp_path / "fleet.json"
    proc = run_cli("compare", "check-cuda-theano.json", "check-cuda-pytensor-jax.json", "--reference", "builtin",
                   "--json", out, check=0)
    result = json.loads(out.read_text())
    assert [r["label"] for r in result["rows"]] == [
        "check-cuda-theano.json[cuda]", "check-cuda-theano.json[cpu]",
        "check-cuda-pytensor-jax.json[cuda]", "check-cuda-pytensor-jax.json[cpu]"]
    assert all(r["passed"] and not r["bitwise_equal"] for r in result["rows"])
    assert max(r["max_abs_prediction_diff"] for r in result["rows"]) < 1e-6
    theano, jax = result["nodes"]
    assert (theano["gpu"], theano["driver"], theano["nvrtc"], theano["cublas"]) == ("NVIDIA H200", "13.0", "13.0",
                                                                                     "13.1.0")
    assert theano["libraries"] == "NVRTC 13.0, cuBLAS 13.1.0" and theano["status"] == "PASS"
    # JAX never loads libgpuarray's NVRTC and cuBLAS: the row names what it did use.
    assert (jax["nvrtc"], jax["cublas"], jax["libraries"]) == (None, None, "jax 0.11.2, jaxlib 0.11.2")
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("report "))
    assert lines[header].split() == ["report", "node", "device", "gpu", "driver", "gpu", "libraries", "runs",
                                     "status"]
    assert lines[header + 1].split()[3:11] == ["NVIDIA", "H200", "13.0", "NVRTC", "13.0,", "cuBLAS", "13.1.0", "2"]
    assert "jax 0.11.2, jaxlib 0.11.2" in lines[header + 2] and lines[-2:] == [
        "fleet: 2 nodes: 2 PASS, 0 FAIL, 0 UNUSABLE, 0 INTERRUPTED", "compare: PASS"]


def test_a_fleet_of_a_thousand_fits_a_screen_plus_a_line_per_failed_node(fleet, tmp_path):
    """989 H200 nodes that passed alike (their real summary, node names gpu001..gpu989) and 11
    whose device was unusable: the text groups what is identical, lists every node that did not
    pass on a row of its own, first, and stays within a screenful plus those rows; --json keeps
    every node, and --all shows every row as for a small fleet."""
    passed = json.loads((H200 / "check-cuda-theano.json").read_text())
    unusable = json.loads((fleet / "unusable" / "summary.json").read_text())
    paths = []
    for i in range(1, 1001):
        data = {**(passed if i <= 989 else unusable), "node": f"gpu{i:03d}"}
        paths.append(_write(tmp_path, f"{i:04d}.json", data))
    out = tmp_path / "fleet.json"
    proc = run_cli("compare", *paths, "--reference", "builtin", "--json", out)
    one_line_error(proc, 5, "11 of 1000 nodes not PASS")
    lines = proc.stdout.splitlines()
    assert len(lines) <= render_compare.SCREEN + 11, "\n".join(lines)
    header = next(i for i, line in enumerate(lines) if line.startswith("report "))
    failed = lines[header + 1:header + 12]
    assert all(line.split()[1] == f"gpu{990 + i:03d}" and "UNUSABLE: " in line for i, line in enumerate(failed))
    assert lines[header + 12].split()[:5] == [str(paths[0]), "(+988", "alike)", "gpu[001-989]", "cuda"]
    assert lines[-2:] == ["fleet: 1000 nodes: 989 PASS, 0 FAIL, 11 UNUSABLE, 0 INTERRUPTED",
                          "(alike runs and passed nodes shown as one row; --all shows every row, --json holds every one)"]
    result = json.loads(out.read_text())
    assert len(result["nodes"]) == 1000 and len(result["rows"]) == 989 * 2
    assert result["status_counts"] == {"PASS": 989, "FAIL": 0, "UNUSABLE": 11, "INTERRUPTED": 0}
    every = run_cli("compare", *paths, "--reference", "builtin", "--all").stdout.splitlines()
    assert len(every) > 2 * 989 * 2 + 1000  # each run in the table and in the list of names, each node
    assert sum(" UNUSABLE: " in line for line in every) == 11 and "alike" not in "\n".join(every)
