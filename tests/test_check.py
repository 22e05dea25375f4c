"""`xor-gpu check` on the CPU, for real: the summary, the files, every refusal of bad input,
a device that cannot be used, and a failing verdict. The device's own check runs in
tests/test_device.py (opencl and gpu envs)."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from xorlib import on_a_cpu_lacking, one_line_error, run_cli, without_cuda_gpu
from xor_gpu import check, child, compare, compile_lock, devices
from xor_gpu.config import TrainConfig
from xor_gpu.errors import CheckFailed

STEPS = ["doctor", "train", "determinism", "parity", "reference"]
DATA = pathlib.Path(__file__).parent / "data" / "v0.1.0"  # reports of the previous release


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
    assert summary["status"] == "passed" and summary["failed_step"] is None and summary["reason"] is None
    assert summary["interrupted_by"] is None and summary["node"] == socket.gethostname()
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
    assert "[5/5] reference" in proc.stderr and "RESULT: PASSED in " in (out / "check.log").read_text()
    _one_after_the_other(summary)
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
    assert summary["status"] == "failed" and summary["failed_step"] == "reference"
    assert summary["reason"] == proc.stderr.strip().splitlines()[-1].removeprefix("xor-gpu: error: ")
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
    assert summary["status"] == "unusable" and summary["failed_step"] == "doctor"
    assert summary["reason"] == last.removeprefix("xor-gpu: error: ")
    assert "cuda" in summary and "Traceback" not in proc.stderr


def test_a_kernel_family_the_cpu_lacks_makes_the_node_unusable_saying_why(tmp_path):
    out = tmp_path / "out"
    argv = on_a_cpu_lacking("SkylakeX", [sys.executable, "-m", "xor_gpu", "check", "--device", "cpu", "--out", str(out)],
                            tmp_path)
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "OPENBLAS_CORETYPE": "SkylakeX"})
    assert proc.returncode == 3, proc.stderr
    summary = _summary(out)
    assert summary["status"] == "unusable" and summary["failed_step"] == "doctor"
    assert summary["reason"].startswith("device cpu is not usable: OPENBLAS_CORETYPE=SkylakeX names OpenBLAS kernels "
                                        "that need avx512f"), summary["reason"]
    doctor = json.loads((out / "doctor.json").read_text())
    assert doctor["blas"]["problem"][0].startswith("OPENBLAS_CORETYPE=SkylakeX") and doctor["blas"]["library"] is None


def test_a_gpu_node_that_cannot_run_the_cpu_reference_is_unusable(tmp_path):
    """The device trains (OpenCL calls no host BLAS), the CPU reference cannot: UNUSABLE at parity."""
    out = tmp_path / "out"
    argv = on_a_cpu_lacking("SkylakeX", [sys.executable, "-m", "xor_gpu", "check", "--device", "opencl0:0",
                                         "--out", str(out)], tmp_path)
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "OPENBLAS_CORETYPE": "SkylakeX"})
    assert proc.returncode == 3, proc.stderr
    summary = _summary(out)
    assert summary["status"] == "unusable" and summary["failed_step"] == "parity"
    assert summary["reason"].startswith("the CPU reference cannot run here: OPENBLAS_CORETYPE=SkylakeX"), summary


def _timeline(summary):
    """{step: (started, ended)}, after checking that the steps' seconds add up to the wall time
    plus the overlap (0.01 s rounding per step)."""
    steps = summary["steps"]
    total = sum(s["seconds"] for s in steps)
    assert summary["overlap_seconds"] >= 0
    assert abs(total - summary["overlap_seconds"] - summary["wall_seconds"]) <= 0.01 * len(steps) + 0.02, summary
    return {s["name"]: (s["started"], s["started"] + s["seconds"]) for s in steps}


def _one_after_the_other(summary):
    spans = list(_timeline(summary).values())
    assert summary["overlap_seconds"] == 0 and spans[0][0] == 0
    assert all(abs(b[0] - a[1]) <= 0.02 for a, b in zip(spans, spans[1:])), spans


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


# A stand-in for a device of its own (a CUDA GPU): PoCL's OpenCL device, which the check
# then trains beside the CPU reference, as it would a GPU.
OWN_HARDWARE = "property(lambda device: not device.is_cpu)"


@pytest.fixture
def start_check():
    """start_check(out, *args, device=, own_hardware=): a check in its own session (as a
    scheduler's job step), its progress on proc.stderr; `own_hardware`: the code of
    Device.own_hardware for it (a stand-in device). Whatever the test's outcome, the check's
    process group is killed at the end: a failed assertion leaves no check training on."""
    started = []

    def start(out, *args, device="cpu", own_hardware=None):
        main = ["-m", "xor_gpu"] if own_hardware is None else [
            "-c", f"import sys; from xor_gpu import cli, devices; devices.Device.own_hardware = {own_hardware}; "
                  "sys.exit(cli.main())"]
        proc = subprocess.Popen([sys.executable, *main, "check", "--device", device, "--out", str(out), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the check and its children have ended
        proc.communicate()


def _wait_for(proc, text):
    """Read the check's progress until a line holds `text`."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"the check ended (exit {proc.wait()}) before {text!r}:\n{''.join(seen)}")


def _children(pid, count=1):
    """The PIDs of pid's child processes, once it has started `count` (Linux /proc)."""
    deadline = time.monotonic() + 60  # a loaded machine forks slowly
    while True:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            children = [int(c) for c in f.read().split()]
        if len(children) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if len(children) >= count:
        return children
    raise AssertionError(f"the check started {len(children)} children, not {count}")


@pytest.mark.parametrize("signum, group, during, done, stand_in", [
    (signal.SIGTERM, False, "the determinism step", ["doctor", "train"], False),  # a cancelled CI job
    (signal.SIGTERM, True, "the determinism step", ["doctor", "train"], False),  # Slurm's time limit: every process
    (signal.SIGINT, False, "the train step", [], False),  # Ctrl-C
    (signal.SIGTERM, False, "the train step", [], True),  # the device's run and the CPU reference at once
])
def test_a_signal_while_training_leaves_a_complete_interrupted_summary(tmp_path, signum, group, during, done,
                                                                        stand_in, start_check):
    out = tmp_path / "out"
    if stand_in:  # steps enough that neither child ends before the signal
        proc = start_check(out, "--steps", "100000000", device="opencl0:0", own_hardware=OWN_HARDWARE)
    else:
        proc = start_check(out, "--steps", "40000")
    _wait_for(proc, "training an independent repeat" if done else "training the seed config")
    children = _children(proc.pid, 2 if stand_in else 1)
    if group:  # the check and its training child at once
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, stderr
    assert stderr.strip().splitlines()[-1] == f"xor-gpu: error: interrupted by {name}"
    summary = _summary(out)
    assert summary["status"] == "interrupted" and summary["passed"] is False
    assert summary["exit_status"] == 128 + signum and summary["interrupted_by"] == name
    assert summary["reason"] == f"interrupted by {name} during {during}" and summary["failed_step"] is None
    assert [s["name"] for s in summary["steps"]] == done and all(s["status"] == "passed" for s in summary["steps"])
    assert summary["node"] == socket.gethostname() == summary["origin"]["host"]
    assert not any(os.path.exists(f"/proc/{c}") for c in children), "a training child outlived the check"
    assert "RESULT: INTERRUPTED" in (out / "check.log").read_text()


def test_sigterm_while_a_training_compiles_lets_its_compile_lock_go(tmp_path, start_check, monkeypatch):
    """Slurm's time limit (SIGTERM to every process of the job) while the training child holds
    the compile lock of a cold cache: the check is INTERRUPTED and the lock is gone, so that
    the tasks sharing the cache go on at once."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    monkeypatch.setenv("XOR_GPU_COMPILEDIR", str(cache))
    proc = start_check(out)
    _wait_for(proc, "training the seed config")
    (child_pid,) = _children(proc.pid)
    lock = compile_lock.lock_file(str(cache))
    deadline = time.monotonic() + 120
    while not compile_lock.read(lock).startswith(f"{child_pid}_") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert compile_lock.read(lock).startswith(f"{child_pid}_"), "the training never held the compile lock"
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert _summary(out)["status"] == "interrupted" and _summary(out)["interrupted_by"] == "SIGTERM"
    assert not os.path.exists(os.path.dirname(lock)), compile_lock.read(lock)


def test_sigkill_leaves_the_previous_summary_intact(tmp_path, start_check):
    """SIGKILL cannot be caught: what the last check wrote must survive whole (atomic writes)."""
    out = tmp_path / "out"
    out.mkdir()
    previous = (DATA / "check-cpu.json").read_bytes()
    (out / "summary.json").write_bytes(previous)
    proc = start_check(out, "--steps", "100000000")
    _wait_for(proc, "training the seed config")
    os.killpg(proc.pid, signal.SIGKILL)  # the check and its training child, as a scheduler does
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert (out / "summary.json").read_bytes() == previous
    assert sorted(os.listdir(out)) == ["check.log", "doctor.json", "summary.json"]
    json.loads((out / "doctor.json").read_text())
    # Its log so far, from its first line (what and where it checks) to the training it was in.
    log = (out / "check.log").read_text().splitlines()
    assert log[0].endswith(f"xor-gpu check: engine theano, device cpu, node {socket.gethostname()}, results in {out}")
    assert log[-1].endswith("training the seed config on cpu (100,000,000 steps) ...")


SHORT = TrainConfig(steps=2000, lr=0.3)  # converges like the seed config (lr x steps = 600)


def _tamper(monkeypatch, edit):
    """Real child runs, whose reports pass through edit(number of the run, its config, report)
    on their way to the check: wrong evidence, injected where the check reads it. Returns the
    devices of the trainings in the order they started."""
    real, calls = child.start, []

    class Tampered:
        def __init__(self, config):
            self.training, self.config, self.number = real(config), config, len(calls) + 1
            calls.append(config.device.name)

        def __getattr__(self, name):
            return getattr(self.training, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.training.stop()

        def result(self, *args):
            run = self.training.result(*args)
            if run.ok:
                edit(self.number, self.config, run.report)
            return run
    monkeypatch.setattr(child, "start", Tampered)
    return calls


def _failed_check(tmp_path, config, reference="builtin"):
    with pytest.raises(CheckFailed) as failed:
        check.main(config, str(tmp_path / "out"), reference)
    summary = _summary(tmp_path / "out")
    assert summary["status"] == "failed" and summary["exit_status"] == failed.value.exit_status == 5
    steps = {s["name"]: s for s in summary["steps"]}
    assert summary["failed_step"] == next(n for n, s in steps.items() if s["status"] == "failed")
    return summary["failed_step"], steps, str(failed.value)


def test_determinism_fails_when_the_repeat_ends_with_other_weights(tmp_path, monkeypatch):
    def other_digest(number, config, report):
        if number == 2:
            report.weights_sha256 = "0" * 64
    _tamper(monkeypatch, other_digest)
    failed, steps, error = _failed_check(tmp_path, SHORT)
    assert failed == "determinism" and steps["train"]["status"] == "passed"
    assert steps["determinism"]["bitwise_equal"] is False and steps["determinism"]["weights_sha256"][1] == "0" * 64
    assert error.startswith("check failed at determinism: two runs differ: max |prediction diff| 0,")


def test_parity_fails_when_the_cpu_run_lies_beyond_the_tolerance(tmp_path, monkeypatch):
    def moved(number, config, report):
        if config.device.is_cpu:
            report.predictions["1,0"] += 2e-4
    calls = _tamper(monkeypatch, moved)
    failed, steps, error = _failed_check(tmp_path, SHORT.replace(device="opencl0:0"))
    assert calls == ["opencl0:0", "opencl0:0", "cpu"]
    assert failed == "parity" and steps["determinism"]["status"] == "passed"
    assert steps["parity"]["max_abs_prediction_diff"] == pytest.approx(2e-4, rel=1e-2)
    assert json.loads((tmp_path / "out" / "parity.json").read_text())["passed"] is False
    assert "(tolerance 0.0001)" in error


def test_a_device_of_its_own_trains_beside_the_cpu_reference(tmp_path, monkeypatch):
    """A stand-in for a GPU (PoCL, taken for a device of its own): the CPU reference starts
    with the device's first run and is awaited at the parity step, which spans from its start;
    the summary's steps add up to its wall time plus the overlap it shows."""
    monkeypatch.setattr(devices.Device, "own_hardware", property(lambda device: not device.is_cpu))
    calls = _tamper(monkeypatch, lambda *args: None)
    check.main(SHORT.replace(device="opencl0:0"), str(tmp_path / "out"))
    summary = _summary(tmp_path / "out")
    assert calls == ["cpu", "opencl0:0", "opencl0:0"] and summary["status"] == "passed"
    spans = _timeline(summary)
    # The parity step spans from the CPU reference's start, with the device's first run.
    assert spans["parity"][0] == pytest.approx(spans["train"][0], abs=0.05)
    assert spans["parity"][1] >= spans["determinism"][1]
    overlap = spans["determinism"][1] - spans["train"][0]  # the device's two runs, beside the CPU's
    assert summary["overlap_seconds"] == pytest.approx(overlap, abs=0.05) and overlap > 0
    log = (tmp_path / "out" / "check.log").read_text()
    assert log.index("training the CPU reference on cpu (2,000 steps), beside the opencl0:0 runs") < \
        log.index("training the seed config on opencl0:0")
    assert "s of it two trainings at once; summary in" in log


def test_only_a_cuda_gpu_trains_beside_the_cpu():
    assert [devices.device(d).own_hardware for d in ("cuda", "cuda1", "cpu", "opencl0:0")] == [True, True, False, False]


def test_opencl_trains_the_cpu_reference_after_its_runs(tmp_path, monkeypatch):
    """PoCL is the CPU's own cores: its runs and the CPU reference one after the other."""
    calls = _tamper(monkeypatch, lambda *args: None)
    check.main(SHORT.replace(device="opencl0:0"), str(tmp_path / "out"))
    assert calls == ["opencl0:0", "opencl0:0", "cpu"]
    _one_after_the_other(_summary(tmp_path / "out"))


def test_the_reference_step_fails_when_the_run_moved_from_the_reference(tmp_path, monkeypatch):
    def moved(number, config, report):
        report.predictions["0,1"] -= 2e-4  # both runs: determinism still holds (equal weights)
    _tamper(monkeypatch, moved)
    failed, steps, error = _failed_check(tmp_path, TrainConfig())
    assert failed == "reference" and steps["determinism"]["status"] == "passed"
    assert steps["reference"]["differences"]["cpu"]["max_abs_prediction_diff"] == pytest.approx(2e-4, rel=1e-2)
    assert error.startswith("check failed at reference: cpu: max |prediction diff| 0.0002")
