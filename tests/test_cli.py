"""The command line as a user meets it: real processes, real Theano, exit codes, files."""
import json
import os

import pytest

from xor_gpu import render
from xor_gpu.engines import CPU_STEPS_PER_CALL
from xor_gpu.results.train_report import TrainReport
from xorlib import one_line_error, run_cli, train_report, without_cuda_gpu


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--steps", "0"], "steps must be between"),
        (["--steps", "-3"], "steps must be between"),
        (["--steps", "ten"], "invalid int value"),
        (["--steps", "1e3"], "invalid int value"),
        (["--hidden", "0"], "hidden must be between"),
        (["--hidden", "x"], "invalid int value"),
        (["--lr", "0"], "lr must be a finite number > 0"),
        (["--lr", "-0.1"], "lr must be a finite number > 0"),
        (["--lr", "nan"], "lr must be a finite number > 0"),
        (["--lr", "inf"], "lr must be a finite number > 0"),
        (["--lr", "fast"], "invalid float value"),
        (["--device", "gpu"], "unknown device 'gpu'"),
        (["--device", "opencl"], "unknown device"),
        (["--floatx", "float16"], "unsupported floatX"),
        (["--seed", "-1"], "seed must be between"),
        (["--steps-per-call", "0"], "steps_per_call must be between 1 and 1000, got 0"),
        (["--steps-per-call", "1001"], "steps_per_call must be between 1 and 1000, got 1001"),
        (["--steps-per-call", "2.5"], "invalid int value"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, fragment):
    out = tmp_path / "r.json"
    proc = run_cli("train", *args, "--json", out)
    one_line_error(proc, 2, fragment)
    assert not out.exists() and os.listdir(tmp_path) == []


@pytest.mark.parametrize("where", ["missing/r.json", "dir", "readonly/r.json"])
def test_unwritable_json_path_exits_2_before_training(tmp_path, where):
    (tmp_path / "dir").mkdir()
    (tmp_path / "readonly").mkdir(mode=0o500)
    target = tmp_path / where
    proc = run_cli("train", "--steps", "5", "--json", target)
    if where.startswith("readonly") and os.geteuid() == 0:
        # root writes anywhere; the folder check is then moot, the write must still be whole.
        assert proc.returncode == 0 and json.loads(target.read_text())["config"]["steps"] == 5
        return
    one_line_error(proc, 2, "cannot write")
    assert proc.stdout == ""  # nothing trained, nothing printed


def test_unknown_subcommand_and_missing_subcommand_exit_2():
    one_line_error(run_cli("fly"), 2, "invalid choice")
    one_line_error(run_cli(), 2, "required")


@without_cuda_gpu
@pytest.mark.parametrize("device", ["cuda", "cuda0"])
def test_cuda_without_a_gpu_is_refused_not_run_on_cpu(tmp_path, device):
    out = tmp_path / "r.json"
    proc = run_cli("train", "--device", device, "--json", out)
    one_line_error(proc, 3, f"device {device} requested but Theano could not initialise it")
    assert "doctor" in proc.stderr
    assert proc.stdout == "" and not out.exists()  # refused before training


def test_default_train_converges_and_reports(tmp_path):
    proc = run_cli("train", "--json", tmp_path / "r.json", "--plot", tmp_path / "loss.png", "--check", check=0)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["schema"] == "xor_gpu.train/1"
    assert report["converged"] is True
    assert report["config"] == {"device": "cpu", "floatx": "float32", "hidden": 3, "lr": 0.01,
                                "steps": 60000, "seed": 1234, "steps_per_call": CPU_STEPS_PER_CALL,
                                "engine": "theano"}
    assert report["device"]["requested"] == report["device"]["active"] == "cpu"
    assert set(report["predictions"]) == {"1,0", "0,0", "0,1", "1,1"}
    for key, target in report["targets"].items():
        assert abs(report["predictions"][key] - target) <= 0.25
    assert report["versions"]["theano"] == "1.0.5" and report["versions"]["numpy"] == "1.23.5"
    assert len(report["loss_history"]["values"]) == 500 and report["loss_history"]["every"] == 120
    assert report["loss_history"]["values"][0] > report["final_loss"] > 0
    assert report["steps_per_second"] > 0 and report["compile_seconds"] > 0
    # The printed text is the report's (xor_gpu.render), whatever its spacing.
    assert proc.stdout.strip() == render.train(TrainReport.from_dict(report))
    table = {row[0]: row[1:] for row in (line.split() for line in proc.stdout.splitlines()[1:5])}
    assert table == {k: [str(report["targets"][k]), f"{v:.6f}", "yes"] for k, v in report["predictions"].items()}
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["loss.png", "r.json"]  # no temporary files left


def test_check_fails_when_not_converged(tmp_path):
    proc = run_cli("train", "--steps", "10", "--check", "--json", tmp_path / "r.json")
    one_line_error(proc, 5, "did not converge")
    report = json.loads((tmp_path / "r.json").read_text())  # the report is still written
    assert report["converged"] is False


def test_without_check_a_short_run_exits_0(tmp_path):
    assert train_report(tmp_path, "--steps", "10")["converged"] is False


def test_same_config_is_bit_identical_across_processes(tmp_path):
    first = train_report(tmp_path, name="a.json")
    second = train_report(tmp_path, name="b.json")
    assert first["predictions"] == second["predictions"]
    assert first["loss_history"] == second["loss_history"]
    assert first["final_loss"] == second["final_loss"]


def test_python_dash_m_and_console_script_agree(tmp_path):
    import shutil
    import subprocess
    import sys

    script = shutil.which("xor-gpu", path=os.path.dirname(sys.executable))
    assert script, "console script xor-gpu is not installed next to the interpreter"
    subprocess.run([script, "train", "--steps", "100", "--json", tmp_path / "a.json"], check=True,
                   capture_output=True)
    b = train_report(tmp_path, "--steps", "100", name="b.json")
    assert json.loads((tmp_path / "a.json").read_text())["predictions"] == b["predictions"]


def test_plot_without_matplotlib_is_refused_before_training(tmp_path):
    """A Python where matplotlib cannot be imported: one line, exit 2, nothing trained."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "matplotlib.py").write_text("raise ImportError('no matplotlib here')\n")
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli("train", "--plot", out / "loss.png", "--json", out / "r.json",
                   env={"PYTHONPATH": str(blocker)})
    one_line_error(proc, 2, "--plot needs matplotlib")
    assert proc.stdout == "" and os.listdir(out) == []


@pytest.mark.parametrize("command", [["train"], ["parity", "--devices", "cpu,opencl0:0"], ["compare", "a.json", "b.json"]])
def test_a_plot_path_that_is_not_a_png_is_refused_before_anything_runs(tmp_path, command):
    """PNG bytes in a .txt file would be a wrong result without a word: one line, exit 2."""
    proc = run_cli(*command, "--plot", tmp_path / "loss.txt", "--json", tmp_path / "r.json")
    one_line_error(proc, 2, f"--plot {tmp_path / 'loss.txt'}: plots are PNG images; give a path ending in .png")
    assert proc.stdout == "" and os.listdir(tmp_path) == []
