"""The launcher's re-exec: the environment a run needs before Python and Theano start
(for cuda devices the CUDA library policy's folders first on LD_LIBRARY_PATH), made by
exactly one re-exec, and none for the other devices."""
import json
import os
import subprocess
import sys

import pytest

import cuda_stand_ins as stand_in
from xorlib import run_cli
from xor_gpu import launch
from xor_gpu.cuda_search import Host


@pytest.fixture(scope="module")
def cu12(tmp_path_factory):
    """NVRTC 12.0 and cuBLAS 12.0.2 stand-ins in one folder, and a CUDA 12.4 driver."""
    base = tmp_path_factory.mktemp("cuda")
    stand_in.nvrtc(base / "lib", 12, 0)
    stand_in.cublas(base / "lib", 12, 0, 2)
    stand_in.driver(base / "driver", 12, 4)
    return {"lib": str(base / "lib"), "driver": str(base / "driver")}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # the folder of links goes to ~/.cache/xor_gpu/cuda-libs
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return tmp_path


def machine(environ, **kw):
    """Nothing but what the test gives: no toolkit, no wheels, no driver of this machine's."""
    return Host(**{"environ": {"PATH": "", **environ}, "sys_path": [], "ldconfig": [], "usr_local": "/nonexistent",
                   "driver_folders": (), **kw})


def _links_folder(home):
    (key,) = os.listdir(home / ".cache" / "xor_gpu" / "cuda-libs")
    return str(home / ".cache" / "xor_gpu" / "cuda-libs" / key)


def test_nothing_to_change_without_cuda_whatever_the_hash_seed(cu12):
    environ = {"XOR_GPU_CUDA_LIBS": cu12["lib"], "LD_LIBRARY_PATH": "/opt/other", "PYTHONHASHSEED": "random"}
    assert launch.wanted_env(["cpu"], machine(environ)) == {}
    assert launch.wanted_env(["opencl0:0"], machine(environ)) == {}


def test_cuda_puts_the_folder_of_links_first(cu12, home):
    environ = {"XOR_GPU_CUDA_LIBS": cu12["lib"], "LD_LIBRARY_PATH": os.pathsep.join([cu12["driver"], "/opt/other"])}
    changes = launch.wanted_env(["cpu", "cuda1"], machine(environ))
    folder = _links_folder(home)
    # The driver is on LD_LIBRARY_PATH already: it stays where it was.
    assert changes == {"LD_LIBRARY_PATH": os.pathsep.join([folder, cu12["driver"], "/opt/other"])}
    assert os.readlink(os.path.join(folder, "libcuda.so")) == f"{cu12['driver']}/libcuda.so.1"
    # Already first (the re-exec'd child, or a caller who did it): nothing to change.
    assert launch.wanted_env(["cuda"], machine({**environ, **changes})) == {}
    # Further back on LD_LIBRARY_PATH is not enough: another libnvrtc.so may come before it.
    later = os.pathsep.join(["/opt/other", folder, cu12["driver"]])
    assert launch.wanted_env(["cuda"], machine({**environ, "LD_LIBRARY_PATH": later})) == {
        "LD_LIBRARY_PATH": os.pathsep.join([folder, "/opt/other", cu12["driver"]])}


def test_a_driver_the_loader_does_not_know_gets_its_folder_added(cu12, home):
    """libcuda.so.1 in e.g. /usr/local/nvidia/lib64, not in ldconfig's cache: its folder
    follows the folder of links, as libcuda loads further driver libraries by name."""
    environ = {"XOR_GPU_CUDA_LIBS": cu12["lib"]}
    changes = launch.wanted_env(["cuda"], machine(environ, driver_folders=(cu12["driver"],)))
    assert changes == {"LD_LIBRARY_PATH": os.pathsep.join([_links_folder(home), cu12["driver"]])}


def test_nothing_usable_changes_nothing(tmp_path, home):
    """The run then fails at pygpu's initialisation, and doctor says why."""
    environ = {"XOR_GPU_CUDA_LIBS": str(tmp_path), "LD_LIBRARY_PATH": "/opt/other"}
    assert launch.wanted_env(["cuda"], machine(environ)) == {}


def test_one_reexec_with_the_mark(cu12, home, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execve", lambda exe, argv, env: calls.append((exe, argv, env)))
    monkeypatch.setenv("XOR_GPU_CUDA_LIBS", cu12["lib"])
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/other")
    monkeypatch.delenv(launch.MARK, raising=False)
    launch.reexec_if_needed(["train", "--steps", "3"], ["cpu"])  # no CUDA: nothing to set
    assert calls == []
    launch.reexec_if_needed(["train", "--steps", "3", "--device", "cuda"], ["cuda"])
    ((exe, argv, env),) = calls
    assert exe == sys.executable and argv == [sys.executable, "-m", "xor_gpu", "train", "--steps", "3",
                                              "--device", "cuda"]
    assert env["LD_LIBRARY_PATH"].startswith(_links_folder(home)) and env[launch.MARK] == "1"
    # In the child: never again, whatever the environment says.
    monkeypatch.setenv(launch.MARK, "1")
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/other")
    launch.reexec_if_needed(["train"], ["cuda"])
    assert len(calls) == 1


def test_the_cli_reexecs_into_the_environment_the_policy_chose(cu12, tmp_path):
    """For real: `xor-gpu doctor` (which always looks at cuda) re-executes itself once; the
    child finds the folder first on LD_LIBRARY_PATH and loads the stand-ins by the
    unversioned names libgpuarray uses."""
    env = {"HOME": str(tmp_path), "XOR_GPU_CUDA_LIBS": cu12["lib"], "LD_LIBRARY_PATH": "/opt/other"}
    run_cli("doctor", "--json", tmp_path / "doctor.json", env=env, check=0)
    found = json.loads((tmp_path / "doctor.json").read_text())
    folder = _links_folder(tmp_path)
    assert found["ld_library_path"].split(os.pathsep)[0] == folder
    assert found["ld_library_path"].endswith("/opt/other")
    assert found["libraries"]["libnvrtc.so"] == "ok" and found["libraries"]["libcublas.so"] == "ok"
    assert found["cuda_libs"]["folder"] == folder
    assert found["cuda_libs"]["nvrtc"] == {"path": f"{cu12['lib']}/libnvrtc.so.12", "version": "12.0"}


# --- the offline bundle's run: bundle/run.sh execs `python -I -m xor_gpu.launch bundle` ----

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
