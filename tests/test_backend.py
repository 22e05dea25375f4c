"""The Theano backend's guards: flags, the import bound to one device, and the refusal of a
compiled graph whose arithmetic does not run where it was asked to."""
import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from xorlib import DEVICE, run_cli
from xor_gpu import backend, compile_cache, host
from xor_gpu.devices import device as named
from xor_gpu.errors import DeviceError


def test_theano_flags_order_defaults_user_then_device():
    flags = backend.theano_flags(named("opencl0:0"), "float32", user_flags="blas.ldflags=-lmyblas,device=cuda,floatX=float64")
    parts = flags.split(",")
    assert parts[-2:] == ["device=opencl0:0", "floatX=float32"]  # the command line wins
    default = f"blas.ldflags={host.default_blas_ldflags()}"
    assert parts.index("blas.ldflags=-lmyblas") > parts.index(default)  # the user's override wins
    assert "print_active_device=False" in parts


def test_user_cxxflags_are_added_to_the_portable_ones(monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    flags = backend.theano_flags(named("cpu"), "float32", user_flags="gcc.cxxflags=-I/opt/include")
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
        backend.verify_graph(_Function(*ops), named(device))


@pytest.mark.parametrize("device, ops", [
    ("opencl0:0", ["GpuFromHost", "GpuDot22", "GpuGemm", "GpuElemwise", "GpuCAReduceCuda", "HostFromGpu"]),
    ("cpu", ["Dot22", "Gemm", "Elemwise", "Sum"]),
])
def test_a_graph_computing_on_the_device_passes(device, ops):
    assert backend.verify_graph(_Function(*ops), named(device)) == ops


def test_compiled_modules_are_kept_for_years_not_aged_out_after_24_days():
    """Theano deletes a compiled module unused for cmodule.age_thresh_use seconds (24 days by
    default): every run a month later would compile cold. Read back from Theano itself."""
    theano = backend.import_theano(named("cpu"), "float32")
    assert theano.config.cmodule.age_thresh_use >= 10 * 365 * 24 * 3600
    assert theano.config.compiledir.startswith(os.path.realpath(compile_cache.compiledir()))


def test_the_real_cpu_graph_is_refused_for_a_gpu_device():
    """The model as compiled on the CPU, presented as a GPU run: exactly the silent fallback."""
    from xor_gpu.config import TrainConfig
    from xor_gpu.model import XorModel

    theano = backend.import_theano(named("cpu"), "float32")
    train = XorModel(theano, TrainConfig()).steps_function(1)
    assert backend.verify_graph(train, named("cpu"))
    with pytest.raises(DeviceError, match="device opencl0:0 requested but the compiled graph runs on the host"):
        backend.verify_graph(train, named("opencl0:0"))


@pytest.mark.parametrize("second, fragment", [
    ("device('opencl0:0'), 'float32'", "Theano is already imported with device=cpu, floatX=float32 in this process; "
                               "opencl0:0/float32 needs a new process"),
    ("device('cpu'), 'float64'", "cpu/float64 needs a new process"),
])
def test_theano_already_imported_with_other_settings_is_refused(second, fragment):
    code = textwrap.dedent(f"""
        from xor_gpu import backend, compile_cache, host
        from xor_gpu.devices import device
        from xor_gpu.errors import DeviceError
        backend.import_theano(device('cpu'), 'float32')
        assert backend.import_theano(device('cpu'), 'float32')  # the same settings again are fine
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


# The compile cache across processes. Theano 1.0.5 alone compiles some modules again in every
# process (ops without properties, and COp versions that follow PYTHONHASHSEED); these runs
# are real processes on one compile cache, so the second one must find everything there.

OPENBLAS_FLAGS = f"blas.ldflags=-l:{host.OPENBLAS}"


def _train(tmp_path, name, *args, env=None):
    run_cli("train", "--steps", "20", "--steps-per-call", "1", "--json", tmp_path / name, *args, env=env, check=0)
    return json.loads((tmp_path / name).read_text())


def test_openblas_modules_are_compiled_once(tmp_path):
    """Dot22 linked to OpenBLAS has no properties: without the package's fix its module was
    compiled again, about 1 s, in every run."""
    env = {"THEANO_FLAGS": f"{os.environ.get('THEANO_FLAGS', '')},{OPENBLAS_FLAGS}"}
    _train(tmp_path, "a.json", "--device", "cpu", env=env)
    second = _train(tmp_path, "b.json", "--device", "cpu", env=env)
    assert "Dot22" in second["ops"] and second["blas"]["ldflags"] == OPENBLAS_FLAGS.partition("=")[2]
    assert second["new_compiled_modules"] == 0


def test_a_warm_run_compiles_nothing_whatever_the_hash_seed(tmp_path):
    """No environment pins PYTHONHASHSEED: runs under different hash seeds share the compile
    cache, as backend._stable_cop_versions keys COp modules by a digest, not by hash()."""
    first = _train(tmp_path, "a.json", "--device", "cpu", env={"PYTHONHASHSEED": "1"})
    second = _train(tmp_path, "b.json", "--device", "cpu", env={"PYTHONHASHSEED": "2"})
    assert "DimShuffle" in second["ops"]  # a COp, whose version Theano takes from hash()
    assert second["new_compiled_modules"] == 0
    assert first["weights_sha256"] == second["weights_sha256"]


@pytest.mark.device
def test_a_second_run_on_the_device_compiles_nothing(device, tmp_path):
    """On OpenCL/CUDA, GpuDot22 and HostFromGpu have no properties either."""
    first = _train(tmp_path, "a.json", "--device", device, env={"PYTHONHASHSEED": "3"})
    second = _train(tmp_path, "b.json", "--device", device, env={"PYTHONHASHSEED": "4"})
    if device != "cpu":
        assert {"GpuDot22", "HostFromGpu"} <= set(second["ops"]), second["ops"]
    assert second["new_compiled_modules"] == 0
    assert first["weights_sha256"] == second["weights_sha256"]


def test_ops_given_props_keep_their_equality_hash_and_name():
    """Only the cache version changes: the ops compare, hash and print as before."""
    code = textwrap.dedent("""
        from xor_gpu import backend, compile_cache, host
        from xor_gpu.devices import device
        theano = backend.import_theano(device('cpu'), 'float32')
        from theano.tensor.blas import Dot22, _dot22
        from theano.compile.ops import DeepCopyOp
        assert Dot22.__props__ and DeepCopyOp.__props__, 'not versioned'
        assert _dot22 == Dot22() and hash(_dot22) == hash(Dot22()) and str(_dot22) == 'Dot22'
        assert _dot22._props() == () and _dot22._props_dict() == {}
        assert DeepCopyOp() == DeepCopyOp() and str(DeepCopyOp()) == 'DeepCopyOp'
        print('ok')
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.parametrize("device, loaded, absent", [
    ("cpu", [], ["scipy", "setuptools", "pkg_resources", "theano.gpuarray", "pygpu"]),
    pytest.param("opencl0:0", ["theano.gpuarray", "pygpu"], ["scipy", "setuptools"], marks=pytest.mark.device),
])
def test_import_theano_imports_only_what_the_device_uses(device, loaded, absent):
    """scipy (0.4 s, ops this network never uses), setuptools (0.2 s, through distutils) and,
    on the CPU, the GPU backend are not imported; scipy can still be imported afterwards."""
    if device != "cpu" and device != DEVICE:
        pytest.skip(f"needs {device}; the opencl env runs it")
    code = textwrap.dedent(f"""
        import sys
        from xor_gpu import backend, compile_cache, host
        from xor_gpu.devices import device
        backend.import_theano(device({device!r}), 'float32')
        print([m for m in {loaded!r} if m not in sys.modules], [m for m in {absent!r} if m in sys.modules])
        import importlib.util
        if importlib.util.find_spec("scipy"):  # the offline bundle leaves scipy out
            import scipy.special
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[] []"


def test_openblas_is_the_default_where_installed(monkeypatch, tmp_path):
    std, extra = tmp_path / "std", tmp_path / "extra"
    std.mkdir()
    extra.mkdir()
    monkeypatch.setattr(host, "standard_folders", lambda: [str(std)])
    monkeypatch.setenv("LD_LIBRARY_PATH", f"/nonexistent:{extra}")
    assert host.default_blas_ldflags() == ""  # numpy's C-API
    (extra / host.OPENBLAS).touch()  # an unpacked bundle: the linker needs its folder
    assert host.default_blas_ldflags() == f"-L{extra} -l:libopenblas.so.0"
    (std / host.OPENBLAS).touch()
    assert host.default_blas_ldflags() == "-l:libopenblas.so.0"
    assert "blas.ldflags=-l:libopenblas.so.0" in backend.theano_flags(named("cpu"), "float32", user_flags="").split(",")
    assert backend.theano_flags(named("cpu"), "float32", user_flags="blas.ldflags=").split(",")[-3] == "blas.ldflags="


def test_cudnn_is_off_unless_the_users_flags_enable_it():
    """cuDNN changes which kernels Theano compiles for the cost's sum (and warns in every
    process about its version): off by default, the user's dnn.enabled wins."""
    assert "dnn.enabled=False" in backend.theano_flags(named("cuda"), "float32", user_flags="").split(",")
    assert not backend.cudnn_enabled("")
    assert backend.cudnn_enabled("dnn.enabled=True") and backend.cudnn_enabled("dnn.enabled=auto")
    flags = backend.theano_flags(named("cuda"), "float32", user_flags="dnn.enabled=True").split(",")
    assert flags.index("dnn.enabled=True") > flags.index("dnn.enabled=False")  # Theano takes the last


def test_a_failed_optimization_is_one_warning_line_not_a_traceback(capsys):
    """Theano logs a failed optimization with its traceback and goes on without it (as when
    a constant folding's compile meets a full disk): one line instead."""
    theano = backend.import_theano(named(DEVICE), "float32")
    try:
        raise OSError(27, "File too large")
    except OSError as exc:
        theano.gof.opt.NavigatorOptimizer.warn(exc, None, None, "constant_folding", "Elemwise{add}(x, y)")
    assert capsys.readouterr().err.splitlines() == [
        "xor-gpu: warning: Theano skipped constant_folding: OSError: [Errno 27] File too large"]
