"""The offline bundle's launch (xor_gpu/launch.py): bundle/run.sh execs `python -I -m
xor_gpu.launch bundle`, which makes the run's whole environment and its default command."""
import json
import os
import subprocess
import sys

import pytest

from xor_gpu import launch


@pytest.mark.parametrize("given, runs", [
    ([], ["check", "--device", "cuda"]),
    (["--out", "o"], ["check", "--device", "cuda", "--out", "o"]),
    (["check", "--steps", "5"], ["check", "--device", "cuda", "--steps", "5"]),
    (["check", "--device", "opencl0:0"], ["check", "--device", "opencl0:0"]),
    (["--device=cpu", "--out", "o"], ["check", "--device=cpu", "--out", "o"]),
    (["doctor"], ["doctor"]),  # other commands as given
    (["train", "--json", "--device"], ["train", "--json", "--device"]),
])
def test_the_bundles_default_command_is_check_on_cuda(given, runs):
    assert launch.bundle_command(given) == runs


def test_the_bundles_environment_is_made_not_inherited():
    # A Slurm job's thread counts and identity pass; so does a user's choice of OpenBLAS kernels.
    scheduler = {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "OPENBLAS_CORETYPE": "Haswell",
                 "SLURM_JOB_ID": "81", "SLURM_ARRAY_TASK_ID": "3", "SLURM_CPUS_PER_TASK": "2"}
    caller = {"PATH": "/opt/gcc/bin:/usr/bin", "HOME": "/home/u", "CUDA_VISIBLE_DEVICES": "1", "TERM": "",
              "LD_LIBRARY_PATH": "/opt/driver", "PYTHONPATH": "/poison", "PYTHONHOME": "/poison",
              "THEANO_FLAGS": "device=cuda,floatX=float64", "XOR_GPU_COMPILEDIR": "/poison", "VIRTUAL_ENV": "/v",
              "XDG_CACHE_HOME": "/poison", "CUDA_CACHE_PATH": "/poison", **scheduler}
    env = launch.bundle_env("/b/root", "/s", ["/c1", "/c2"], caller)
    lib = f"/b/root/usr/lib/{os.uname().machine}-linux-gnu"
    assert env == {
        "PATH": "/opt/gcc/bin:/usr/bin", "HOME": "/home/u", "CUDA_VISIBLE_DEVICES": "1", "TMPDIR": "/tmp",
        "LANG": "C.UTF-8", "LD_LIBRARY_PATH": f"{lib}:/b/root/usr/lib:/opt/driver",
        "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/s/mpl",
        "XOR_GPU_COMPILEDIR": "/s/theano", "POCL_CACHE_DIR": "/s/pocl", "XOR_GPU_MANIFEST": "/b/MANIFEST.json",
        # Everything a run writes goes under the state folder (--cache): the CUDA driver's kernel cache too.
        "XDG_CACHE_HOME": "/s/cache", "CUDA_CACHE_PATH": "/s/nv",
        "THEANO_FLAGS": f"gcc.cxxflags=-I/b/root/usr/include -L{lib} -L/b/root/usr/lib",
        "XOR_GPU_CUDA_LIBS": "/c1:/c2", **scheduler}
    # No --cuda-libs: the caller's XOR_GPU_CUDA_LIBS goes on; nothing of PYTHONHASHSEED's.
    env = launch.bundle_env("/b/root", "/s", [], {"XOR_GPU_CUDA_LIBS": "/n", "PYTHONHASHSEED": "0"})
    assert env["XOR_GPU_CUDA_LIBS"] == "/n" and "PYTHONHASHSEED" not in env


def test_the_bundle_entry_runs_the_command_in_that_environment(tmp_path):
    """For real, as run.sh ends: the caches' folders made, the caller's Python variables gone,
    the command run with its arguments."""
    state = tmp_path / "state"
    poison = tmp_path / "poison"
    poison.mkdir()
    (poison / "sitecustomize.py").write_text("raise SystemExit('the caller PYTHONPATH leaked')\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(poison),
           "THEANO_FLAGS": "device=cuda", "XOR_GPU_COMPILEDIR": str(poison)}
    proc = subprocess.run([sys.executable, "-I", "-B", "-m", "xor_gpu.launch", "bundle", str(tmp_path / "root"),
                           str(state), f"--cuda-libs={tmp_path}", "--", "doctor", "--json", str(tmp_path / "d.json")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in state.iterdir()) == sorted(launch.STATE_FOLDERS)
    assert {(state / name).stat().st_mode & 0o777 for name in launch.STATE_FOLDERS} == {0o700}
    found = json.loads((tmp_path / "d.json").read_text())
    assert found["compiledir"] == str(state / "theano")
    assert found["cuda_libs"]["searched"][0] == str(tmp_path)
    assert found["ld_library_path"].split(os.pathsep)[-2:] == [f"{tmp_path}/root/usr/lib/{os.uname().machine}-linux-gnu",
                                                               f"{tmp_path}/root/usr/lib"]


def test_the_bundle_entry_refuses_a_cache_folder_of_another_user(tmp_path, nobody):
    """run.sh has checked the state folder; its caches are checked here, before the command
    (that would load what they hold) runs: one line, exit 3, the fix naming --cache."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "theano").mkdir()
    os.chown(state / "theano", nobody.uid, nobody.gid)
    proc = subprocess.run([sys.executable, "-I", "-B", "-m", "xor_gpu.launch", "bundle", str(tmp_path / "root"),
                           str(state), "--", "doctor", "--json", str(tmp_path / "d.json")],
                          env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, capture_output=True, text=True,
                          timeout=300)
    theano = state / "theano"
    assert proc.returncode == 3 and not (tmp_path / "d.json").exists()
    assert proc.stderr.splitlines() == [f"xor-gpu: error: cache folder {theano} is not yours (owner nobody, mode 0755): "
                                        f"use --cache on a folder of your own, or remove {theano}"]
