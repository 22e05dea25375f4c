"""`xor-gpu check` on the CPU, for real: the summary, the files, every refusal of bad input,
a device that cannot be used, and a failing verdict. The device's own check runs in
tests/test_device.py (opencl and gpu envs)."""
import json
import os

import pytest

from xorlib import one_line_error, run_cli, without_cuda_gpu
from xor_gpu import compare

STEPS = ["doctor", "train", "determinism", "parity", "reference"]


def _summary(out):
    return json.loads((out / "summary.json").read_text())


def _reference_copy(tmp_path, edit):
    data = json.loads(open(compare.builtin_reference_path(), encoding="utf-8").read())
    edit(data)
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(data))
    return path


def test_cpu_check_passes_against_the_committed_reference(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("check", "--device", "cpu", "--out", out, check=0)
    summary = _summary(out)
    assert summary["schema"] == "xor_gpu.check/1" and summary["passed"] is True and summary["exit_status"] == 0
    assert [s["name"] for s in summary["steps"]] == STEPS
    status = {s["name"]: s["status"] for s in summary["steps"]}
    assert status == {"doctor": "passed", "train": "passed", "determinism": "passed",
                      "parity": "skipped", "reference": "passed"}
    assert all(s["seconds"] >= 0 and s["summary"] for s in summary["steps"])
    run = summary["runs"]["cpu"]
    assert run["converged"] and run["config"]["steps"] == 60000 and run["device"]["active"] == "cpu"
    assert summary["versions"]["theano"] == "1.0.5" and summary["device"]["name"]
    reference = next(s for s in summary["steps"] if s["name"] == "reference")
    diff = reference["differences"]["cpu"]
    assert diff["max_abs_prediction_diff"] <= compare.DEFAULT_ATOL
    print(f"cpu check vs the committed reference: {diff}")
    assert sorted(os.listdir(out)) == ["check.log", "check.png", "doctor.json", "summary.json", "train.json"]
    assert "[5/5] reference" in proc.stderr and "RESULT: PASS" in (out / "check.log").read_text()
    # The summary is a report compare reads.
    run_cli("compare", out / "summary.json", "--reference", "builtin", check=0)


def test_a_reference_that_disagrees_fails_with_exit_5(tmp_path):
    def move(data):
        data["predictions"]["1,0"] += 2e-4
    out = tmp_path / "out"
    proc = run_cli("check", "--device", "cpu", "--out", out, "--reference", _reference_copy(tmp_path, move))
    assert proc.returncode == 5
    assert proc.stderr.strip().splitlines()[-1].startswith("xor-gpu: error: check failed at reference: cpu: max")
    summary = _summary(out)
    assert summary["passed"] is False and summary["exit_status"] == 5
    assert [s["status"] for s in summary["steps"]] == ["passed", "passed", "passed", "skipped", "failed"]


def test_shorter_runs_skip_the_builtin_reference_but_still_must_converge(tmp_path):
    out = tmp_path / "out"
    run_cli("check", "--device", "cpu", "--out", out, "--steps", "40000", check=0)
    reference = _summary(out)["steps"][-1]
    assert reference["status"] == "skipped" and "seed config" in reference["summary"]
    proc = run_cli("check", "--device", "cpu", "--out", tmp_path / "short", "--steps", "2000")
    assert proc.returncode == 5 and "check failed at train: did NOT converge" in proc.stderr


@without_cuda_gpu
def test_cuda_without_a_gpu_exits_3_naming_the_cause(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("check", "--device", "cuda", "--out", out)
    assert proc.returncode == 3
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("xor-gpu: error: device cuda is not usable: device cuda requested but Theano could not")
    assert "libcuda.so" in last
    summary = _summary(out)
    assert summary["exit_status"] == 3 and [s["status"] for s in summary["steps"]] == ["failed"] + ["skipped"] * 4
    assert "cuda" in summary and "Traceback" not in proc.stderr


def _not_a_report(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a report")
    return ["--reference", path], "not JSON"


def _other_config(tmp_path):
    def more_hidden(data):
        data["config"]["hidden"] = 5
    return ["--reference", _reference_copy(tmp_path, more_hidden)], "the reference was made with hidden=5"


def _under_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    return ["--out", tmp_path / "file" / "out"], "cannot create"


@pytest.mark.parametrize("case, make", [
    ("unknown device", lambda p: (["--device", "gpu0"], "unknown device 'gpu0'")),
    ("no device", lambda p: (["--device"], "expected one argument")),
    ("bad tolerance", lambda p: (["--atol", "-1"], "atol must be a finite number >= 0")),
    ("out is a file", lambda p: (p.joinpath("f").write_text("") and [] or ["--out", p / "f"], "not a folder")),
    ("out under a file", _under_a_file),
    ("reference not a report", _not_a_report),
    ("reference of another config", _other_config),
    ("missing reference", lambda p: (["--reference", p / "nope.json"], "no such file")),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, case, make):
    args, fragment = make(tmp_path)
    before = sorted(os.listdir(tmp_path))
    device = [] if "--device" in map(str, args) else ["--device", "cpu"]
    out = [] if "--out" in map(str, args) else ["--out", tmp_path / "out"]
    proc = run_cli("check", *device, *out, *args)
    one_line_error(proc, 2, fragment)
    assert sorted(os.listdir(tmp_path)) == before and proc.stdout == ""
