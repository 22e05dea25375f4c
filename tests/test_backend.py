"""The Theano backend's guards: flags, the import bound to one device, and the refusal of a
compiled graph whose arithmetic does not run where it was asked to."""
import platform
import subprocess
import sys
import textwrap

import pytest

from xorlib import DEVICE
from xor_gpu import backend
from xor_gpu.errors import DeviceError


def test_theano_flags_order_defaults_user_then_device():
    flags = backend.theano_flags("opencl0:0", "float32", user_flags="blas.ldflags=-lopenblas,device=cuda,floatX=float64")
    parts = flags.split(",")
    assert parts[-2:] == ["device=opencl0:0", "floatX=float32"]  # the command line wins
    assert parts.index("blas.ldflags=-lopenblas") > parts.index("blas.ldflags=")  # the user's override wins
    assert "print_active_device=False" in parts


def test_user_cxxflags_are_added_to_the_portable_ones(monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    flags = backend.theano_flags("cpu", "float32", user_flags="gcc.cxxflags=-I/opt/include")
    assert "gcc.cxxflags=-march=x86-64 -mtune=generic -I/opt/include" in flags.split(",")
    assert "-march=native" not in flags


class _Node:
    def __init__(self, name):
        self.op = type(name, (), {})()


class _Function:
    """The shape of a compiled theano.function that verify_graph reads: maker.fgraph.toposort()."""

    def __init__(self, *names):
        nodes = [_Node(n) for n in names]
        self.maker = type("Maker", (), {"fgraph": type("FGraph", (), {"toposort": lambda self: nodes})()})()


@pytest.mark.parametrize("device, ops, fragment", [
    ("opencl0:0", ["GpuFromHost", "Dot22", "GpuElemwise", "HostFromGpu"], "runs on the host (Dot22)"),
    ("cuda", ["GpuDot22", "Elemwise", "Sum"], "runs on the host (Elemwise, Sum)"),
    ("cuda0", ["Dot22", "Elemwise"], "runs on the host (Dot22, Elemwise)"),
    ("opencl0:0", ["Shape_i", "DimShuffle"], "no GPU ops"),
    ("cpu", ["Dot22", "GpuElemwise"], "device cpu requested but the graph holds GPU ops: GpuElemwise"),
])
def test_a_graph_computing_in_the_wrong_place_is_refused(device, ops, fragment):
    with pytest.raises(DeviceError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        backend.verify_graph(_Function(*ops), device)


@pytest.mark.parametrize("device, ops", [
    ("opencl0:0", ["GpuFromHost", "GpuDot22", "GpuGemm", "GpuElemwise", "GpuCAReduceCuda", "HostFromGpu"]),
    ("cpu", ["Dot22", "Gemm", "Elemwise", "Sum"]),
])
def test_a_graph_computing_on_the_device_passes(device, ops):
    assert backend.verify_graph(_Function(*ops), device) == ops


@pytest.mark.skipif(DEVICE != "cpu", reason="compiles the real model on the CPU; the cpu env runs it")
def test_the_real_cpu_graph_is_refused_for_a_gpu_device():
    """The model as compiled on the CPU, presented as a GPU run: exactly the silent fallback."""
    from xor_gpu.config import TrainConfig
    from xor_gpu.model import XorModel

    theano = backend.import_theano("cpu", "float32")
    model = XorModel(theano, TrainConfig())
    assert backend.verify_graph(model.train, "cpu")
    with pytest.raises(DeviceError, match="device opencl0:0 requested but the compiled graph runs on the host"):
        backend.verify_graph(model.train, "opencl0:0")


@pytest.mark.parametrize("second, fragment", [
    ("'opencl0:0', 'float32'", "Theano is already imported with device=cpu, floatX=float32 in this process; "
                               "opencl0:0/float32 needs a new process"),
    ("'cpu', 'float64'", "cpu/float64 needs a new process"),
])
def test_theano_already_imported_with_other_settings_is_refused(second, fragment):
    code = textwrap.dedent(f"""
        from xor_gpu import backend
        from xor_gpu.errors import DeviceError
        backend.import_theano('cpu', 'float32')
        assert backend.import_theano('cpu', 'float32')  # the same settings again are fine
        try:
            backend.import_theano({second})
        except DeviceError as exc:
            print(exc)
        else:
            raise SystemExit('not refused')
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert fragment in proc.stdout


def test_heavy_ops_name_the_arithmetic_of_the_step():
    """One list serves the guard and the device tests."""
    assert {"Dot22", "Gemm", "Elemwise", "CAReduce"} <= set(backend.HEAVY_OPS)
