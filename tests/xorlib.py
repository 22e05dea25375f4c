"""Helpers shared by the tests (a module of its own: tests/docker has a conftest.py too,
so `from conftest import` would be ambiguous). The device under test comes from
THEANO_FLAGS (device=..., as tox sets it per env; default cpu)."""
import dataclasses
import json
import os
import pwd
import subprocess
import sys
import tempfile

import pytest

import cuda_stand_ins
from xor_gpu import host
from xor_gpu.host import cuda_driver
from xor_gpu.problem import ROWS
from xor_gpu.results.train_report import LossHistory, RunDevice, SeedsReport, TrainReport


def _flag(name, default):
    for part in os.environ.get("THEANO_FLAGS", "").split(","):
        key, _, value = part.partition("=")
        if key.strip() == name and value.strip():
            return value.strip()
    return default


DEVICE = _flag("device", "cpu")


HAS_CUDA_GPU = bool(cuda_driver()[1])
# What a missing GPU does (refusal, doctor's advice, the gate) can only be shown without one.
without_cuda_gpu = pytest.mark.skipif(HAS_CUDA_GPU, reason="this machine has a CUDA GPU: "
                                      "the behaviour without one cannot be shown here")


def require_gpu():
    return os.environ.get("XOR_GPU_REQUIRE_GPU") == "1"


def strict(variable):
    """Whether a missing Docker / PyTensor env fails instead of skipping: the variable
    (XOR_GPU_REQUIRE_DOCKER, XOR_GPU_REQUIRE_ENGINES) when set, else whether this runs in CI
    (CI=true, set by CI systems). Not for the GPU: CI machines have none."""
    value = os.environ.get(variable) or ("1" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "0")
    return value == "1"


@dataclasses.dataclass(frozen=True)
class Account:
    """A second account on this machine (nobody), that a test acts as with setpriv: what it
    makes is its own, as another user's files on a shared machine are."""
    name: str
    uid: int
    gid: int

    def run(self, *cmd):
        subprocess.run(["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", *map(str, cmd)],
                       check=True, capture_output=True, timeout=60)

    def mkdir(self, path, mode):
        self.run("mkdir", "-m", f"{mode:o}", path)


def second_account():
    """`nobody` as an Account; acting as it needs root: skips without (fails where
    XOR_GPU_REQUIRE_ROOT=1 or CI requires it, as CI's containers run as root)."""
    if os.geteuid() != 0:
        message = "acting as a second account (nobody) needs root"
        if strict("XOR_GPU_REQUIRE_ROOT"):
            pytest.fail(f"{message}, and XOR_GPU_REQUIRE_ROOT=1 (or CI) requires it")
        pytest.skip(f"{message}; set XOR_GPU_REQUIRE_ROOT=1 (CI does) to make this a failure")
    user = pwd.getpwnam("nobody")
    return Account(user.pw_name, user.pw_uid, user.pw_gid)


def common_folder():
    """A fresh folder where root and the second account both make folders (pytest's own are
    private): in /tmp, and like it root's with mode 1777. Remove it with shutil.rmtree."""
    folder = tempfile.mkdtemp(prefix="xor_gpu-two-users.", dir="/tmp")
    os.chmod(folder, 0o1777)
    return folder


PLANTED = "PLANTED-BY-nobody"  # what planted code writes where it ran


def planted_library(path, marker):
    """A shared object at `path` (a pathlib.Path) whose loading appends PLANTED to `marker`:
    code another user left in a cache, that must never run."""
    cuda_stand_ins.build(path.parent, path.name, '#include <stdio.h>\n'
                         '__attribute__((constructor)) static void planted(void) {\n'
                         f'    FILE *f = fopen("{marker}", "a");\n'
                         f'    if (f) {{ fputs("{PLANTED}\\n", f); fclose(f); }}\n}}')
    return path


def on_a_cpu_lacking(family, argv, tmp_path):
    """argv, run where the CPU lacks the instructions of OpenBLAS's kernel family `family`: as it
    is where this CPU lacks them, else with a /proc/cpuinfo whose flags leave them out (a mount
    namespace of its own, which needs root)."""
    needs = set(host.OPENBLAS_FAMILIES[family.lower()])
    if not needs <= host.cpu_flags():
        return argv
    if os.geteuid() != 0:
        pytest.skip(f"this CPU runs {family}'s kernels, and only root can show it a /proc/cpuinfo without them")
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        lines = f.read().split("\n")
    fake = tmp_path / f"cpuinfo-without-{family}"
    fake.write_text("\n".join(" ".join(w for w in line.split(" ") if w not in needs) if line.startswith("flags")
                              else line for line in lines))
    return ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /proc/cpuinfo && exec "$@"', str(fake), *argv]


def run_cli(*args, env=None, check=None):
    """Run `python -m xor_gpu ARGS` in a fresh process (Theano binds a device per process)."""
    proc = subprocess.run([sys.executable, "-m", "xor_gpu", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def one_line_error(proc, status, fragment):
    """The contract for every error: this exit status, one line on stderr, no traceback."""
    assert proc.returncode == status, f"exit {proc.returncode}\nstderr:\n{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{proc.stderr}"
    assert lines[0].startswith("xor-gpu: error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def cli_report(tmp_path, command, *args, name="report.json", env=None, check=0):
    """(the JSON report of `xor-gpu COMMAND --json PATH ARGS`, the process)."""
    path = tmp_path / name
    proc = run_cli(command, "--json", path, *args, env=env, check=check)
    with open(path, encoding="utf-8") as f:
        return json.load(f), proc


def train_report(tmp_path, *args, name="report.json", env=None):
    return cli_report(tmp_path, "train", *args, name=name, env=env)[0]


# --- reports of runs, holding only what the differences and verdicts read ----------------------

def stub_run(predictions, losses, sha="a" * 64, converged=True):
    return TrainReport(predictions=dict(zip(ROWS, predictions)), loss_history=LossHistory(1, losses),
                       weights_sha256=sha, converged=converged)


def stub_sweep(*others):
    """Sweep reports of the reference device (every seed converged, predictions 0.9/0.1) and of
    a second device whose run of seed i is others[i]."""
    ref, dev = SeedsReport(runs={}), SeedsReport(runs={})
    for i, other in enumerate(others):
        ref.runs[str(i)] = dataclasses.replace(stub_run([0.9, 0.1, 0.9, 0.1], [1.0, 0.5], converged=other.converged),
                                               final_loss=0.04, steps_per_second=1.0, device=RunDevice(name="cpu"))
        dev.runs[str(i)] = dataclasses.replace(other, final_loss=0.04, steps_per_second=1.0, device=RunDevice(name="d"))
    return {"cpu": ref, "opencl0:0": dev}


# A second device's runs against stub_sweep's reference (atol 1e-4): inside, beyond, and stalled.
CLOSE = stub_run([0.9 + 5e-5, 0.1, 0.9, 0.1], [1.0, 0.5], sha="b" * 64)
FAR = stub_run([0.9 + 2e-4, 0.1, 0.9, 0.1], [1.0, 0.5], sha="b" * 64)
STALLED_FAR = stub_run([0.6, 0.5, 0.5, 0.4], [1.0, 0.9], sha="c" * 64, converged=False)
