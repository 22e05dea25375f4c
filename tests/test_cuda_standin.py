"""xor_gpu's NVRTC front (xor_gpu/cuda_standin/libnvrtc_front.c), for real, through the folder of
links a run loads it from, in a process of its own: in front of an NVRTC that records what it
receives, and a driver (tests/cuda_stand_ins.py) showing the GPUs each test needs.

Compute capability 10 and more: libgpuarray's cut-short `-arch compute_1X` becomes the device's
whole architecture, and the run can tell (cuda_standin.front_record). Below 10: every option
reaches NVRTC exactly as given."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

import cuda_stand_ins as stand_in
from xor_gpu import cuda_arch, cuda_libs, cuda_standin
from xor_gpu.cuda_search import Host
COMPILE = """
    import ctypes, json, sys
    from xor_gpu import cuda_standin
    ctypes.CDLL("libcuda.so")  # as libgpuarray does, the driver first: the front asks it
    nvrtc = ctypes.CDLL("libnvrtc.so")
    options = [o.encode() for o in json.loads(sys.argv[1])]
    assert nvrtc.nvrtcCompileProgram(None, len(options), (ctypes.c_char_p * len(options))(*options)) == 0
    record = cuda_standin.front_record()
    print(json.dumps(record.to_dict() if record else None))
"""


@pytest.fixture(scope="module")
def nvrtc13(tmp_path_factory):
    """An NVRTC 13.0 that compiles for every architecture (the rule takes it for any GPU)."""
    folder = tmp_path_factory.mktemp("nvrtc")
    stand_in.nvrtc_recording(folder, 13, 0, cuda_arch.KNOWN_ARCHS)
    stand_in.cublas(folder, 13, 0, 0)
    return folder


def compile_through_the_front(tmp_path, nvrtc13, gpus, options, context=None):
    """(the options NVRTC received, what the run's record says) for one compilation with
    `options`, on a driver showing `gpus`."""
    stand_in.driver(tmp_path / "driver", 13, 0, gpus)
    machine = Host(environ={"PATH": "", "LD_LIBRARY_PATH": str(tmp_path / "driver"), "XOR_GPU_CUDA_LIBS": str(nvrtc13)},
                   sys_path=[], ldconfig=[], usr_local=str(tmp_path), driver_folders=())
    folder = cuda_libs.recording_folder(cuda_libs.resolve(host=machine), str(tmp_path / "links"))
    received = tmp_path / "received"
    received.unlink(missing_ok=True)
    env = {**os.environ, "LD_LIBRARY_PATH": folder, "XOR_GPU_TEST_NVRTC_OPTIONS": str(received),
           **({"XOR_GPU_TEST_CONTEXT": str(context)} if context is not None else {})}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(COMPILE), json.dumps(options)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return received.read_text().rstrip("\n").split("\t"), json.loads(proc.stdout)


@pytest.mark.parametrize("cc", [(9, 0), (8, 0), (7, 0), (7, 5)])
@pytest.mark.parametrize("options", [["-arch", "compute_90"], ["-arch", "compute_10"], ["-arch=compute_12"],
                                     ["-G", "-arch", "compute_10", "-lineinfo"]])
def test_below_compute_capability_10_every_option_goes_on_as_given(tmp_path, nvrtc13, cc, options):
    assert compile_through_the_front(tmp_path, nvrtc13, [cc], options) == (options, None)


@pytest.mark.parametrize("cc, asked, whole", [
    ((10, 0), "compute_10", "compute_100"), ((10, 3), "compute_10", "compute_103"), ((11, 0), "compute_11", "compute_110"),
    ((12, 0), "compute_12", "compute_120"), ((12, 1), "compute_12", "compute_121")])
def test_blackwell_gets_its_whole_architecture_and_the_run_says_so(tmp_path, nvrtc13, cc, asked, whole):
    received, record = compile_through_the_front(tmp_path, nvrtc13, [cc], ["-G", "-arch", asked, "-lineinfo"])
    assert received == ["-G", "-arch", whole, "-lineinfo"]  # nothing else touched
    assert record == {"asked": asked, "compiled_for": whole, "compilations": 1}
    assert compile_through_the_front(tmp_path, nvrtc13, [cc], [f"-arch={asked}"])[0] == [f"-arch={whole}"]


@pytest.mark.parametrize("options", [["-arch", "compute_90"], ["-arch", "compute_12"], ["-arch", "compute_100"]])
def test_on_blackwell_what_is_not_its_name_cut_short_goes_on_as_given(tmp_path, nvrtc13, options):
    assert compile_through_the_front(tmp_path, nvrtc13, [(10, 0)], options) == (options, None)


def test_the_current_contexts_device_decides_and_without_one_only_alike_gpus_do(tmp_path, nvrtc13):
    """A V100 and a B200 in one node: the device of the current context decides; with no
    context the front cannot tell which GPU NVRTC compiles for, and leaves the option as given."""
    gpus = [(7, 0), (10, 0)]
    assert compile_through_the_front(tmp_path, nvrtc13, gpus, ["-arch", "compute_10"], context=1)[0] == [
        "-arch", "compute_100"]
    assert compile_through_the_front(tmp_path, nvrtc13, gpus, ["-arch", "compute_10"], context=0)[0] == [
        "-arch", "compute_10"]
    assert compile_through_the_front(tmp_path, nvrtc13, gpus, ["-arch", "compute_10"])[0] == ["-arch", "compute_10"]
    assert compile_through_the_front(tmp_path, nvrtc13, [(10, 0), (10, 0)], ["-arch", "compute_10"])[0] == [
        "-arch", "compute_100"]


def test_a_process_without_the_front_has_no_record():
    assert cuda_standin.front_record() is None


def test_the_front_is_not_a_stand_in(tmp_path):
    """A run may load the front (it forwards to the real NVRTC); the stand-ins it refuses."""
    maps = tmp_path / "maps"
    maps.write_text(f"7f02-7f03 r-xp 00000000 08:01 43 {cuda_standin.front()}\n")
    assert cuda_standin.loaded(str(maps)) is None
