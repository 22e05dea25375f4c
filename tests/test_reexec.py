"""The re-exec of the command line (xor_gpu/reexec.py): the environment a run needs before
Python and Theano start (for cuda devices the CUDA library policy's folders first on
LD_LIBRARY_PATH), made by exactly one re-exec, and none for the other devices."""
import json
import os
import sys

import pytest

import cuda_stand_ins as stand_in
from xorlib import run_cli
from xor_gpu import reexec
from xor_gpu.devices import device
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
    assert reexec.wanted_env([device("cpu")], machine(environ)) == {}
    assert reexec.wanted_env([device("opencl0:0")], machine(environ)) == {}


def test_cuda_puts_the_folder_of_links_first(cu12, home):
    environ = {"XOR_GPU_CUDA_LIBS": cu12["lib"], "LD_LIBRARY_PATH": os.pathsep.join([cu12["driver"], "/opt/other"])}
    changes = reexec.wanted_env([device("cpu"), device("cuda1")], machine(environ))
    folder = _links_folder(home)
    # The driver is on LD_LIBRARY_PATH already: it stays where it was.
    assert changes == {"LD_LIBRARY_PATH": os.pathsep.join([folder, cu12["driver"], "/opt/other"])}
    assert os.readlink(os.path.join(folder, "libcuda.so")) == f"{cu12['driver']}/libcuda.so.1"
    # Already first (the re-exec'd child, or a caller who did it): nothing to change.
    assert reexec.wanted_env([device("cuda")], machine({**environ, **changes})) == {}
    # Further back on LD_LIBRARY_PATH is not enough: another libnvrtc.so may come before it.
    later = os.pathsep.join(["/opt/other", folder, cu12["driver"]])
    assert reexec.wanted_env([device("cuda")], machine({**environ, "LD_LIBRARY_PATH": later})) == {
        "LD_LIBRARY_PATH": os.pathsep.join([folder, "/opt/other", cu12["driver"]])}


def test_a_driver_the_loader_does_not_know_gets_its_folder_added(cu12, home):
    """libcuda.so.1 in e.g. /usr/local/nvidia/lib64, not in ldconfig's cache: its folder
    follows the folder of links, as libcuda loads further driver libraries by name."""
    environ = {"XOR_GPU_CUDA_LIBS": cu12["lib"]}
    changes = reexec.wanted_env([device("cuda")], machine(environ, driver_folders=(cu12["driver"],)))
    assert changes == {"LD_LIBRARY_PATH": os.pathsep.join([_links_folder(home), cu12["driver"]])}


def test_nothing_usable_changes_nothing(tmp_path, home):
    """The run then fails at pygpu's initialisation, and doctor says why."""
    environ = {"XOR_GPU_CUDA_LIBS": str(tmp_path), "LD_LIBRARY_PATH": "/opt/other"}
    assert reexec.wanted_env([device("cuda")], machine(environ)) == {}


def test_one_reexec_with_the_mark(cu12, home, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execve", lambda exe, argv, env: calls.append((exe, argv, env)))
    monkeypatch.setenv("XOR_GPU_CUDA_LIBS", cu12["lib"])
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/other")
    monkeypatch.delenv(reexec.MARK, raising=False)
    reexec.for_devices(["train", "--steps", "3"], [device("cpu")])  # no CUDA: nothing to set
    assert calls == []
    reexec.for_devices(["train", "--steps", "3", "--device", "cuda"], [device("cuda")])
    ((exe, argv, env),) = calls
    assert exe == sys.executable and argv == [sys.executable, "-m", "xor_gpu", "train", "--steps", "3",
                                              "--device", "cuda"]
    assert env["LD_LIBRARY_PATH"].startswith(_links_folder(home)) and env[reexec.MARK] == "1"
    # In the child: never again, whatever the environment says.
    monkeypatch.setenv(reexec.MARK, "1")
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/other")
    reexec.for_devices(["train"], [device("cuda")])
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
