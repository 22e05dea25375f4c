"""PyTensor's runtimes: the refusal of a graph compiled by another linker, and the JAX
platform guard, at the boundary where they read PyTensor's and JAX's answers. The module
imports neither package itself, so these run in Theano's envs too; the tests marked
`engines` run the same guards on the real packages (pytensor env)."""
import os
import types

import pytest

from xor_gpu import engines, pytensor_backend
from xor_gpu.devices import device as named
from xor_gpu.errors import DeviceError
from xorlib import run_cli


def _compiled(linker_class, *ops):
    """The shape of a compiled pytensor.function that the guards read."""
    nodes = [types.SimpleNamespace(op=type(op, (), {})()) for op in ops]
    maker = types.SimpleNamespace(linker=type(linker_class, (), {})(),
                                  fgraph=types.SimpleNamespace(toposort=lambda: nodes))
    return types.SimpleNamespace(maker=maker)


@pytest.mark.parametrize("engine, compiled_by", [
    ("pytensor", "NumbaLinker"),  # PyTensor 3's default mode: what a lost Mode(linker="cvm") gives
    ("pytensor-numba", "VMLinker"),
    ("pytensor-jax", "NumbaLinker"),
    ("pytensor-jax", "PerformLinker"),  # Python's own implementations, no compiled code
])
def test_a_graph_from_another_linker_is_refused(engine, compiled_by):
    runtime = engines.get(engine).runtime
    with pytest.raises(DeviceError, match=f"engine {engine} requested but PyTensor compiled with {compiled_by}"):
        pytensor_backend.verify_linker(_compiled(compiled_by, "Dot22"), runtime.linker_class, engine)


@pytest.mark.parametrize("engine, linker_class", [
    ("pytensor", "VMLinker"), ("pytensor-numba", "NumbaLinker"), ("pytensor-jax", "JAXLinker")])
def test_a_graph_from_the_linker_asked_for_passes_with_its_ops(engine, linker_class):
    assert engines.get(engine).runtime.linker_class == linker_class
    function = _compiled(linker_class, "Dot22", "Elemwise")
    assert pytensor_backend.verify_linker(function, linker_class, engine) == ["Dot22", "Elemwise"]


def _jax(*platforms):
    return lambda: [types.SimpleNamespace(platform=p, device_kind=f"{p} device") for p in platforms]


def _no_gpu():
    raise RuntimeError("Unknown backend: 'cuda' requested, but no platforms\n that are instances of cuda are present")


@pytest.mark.parametrize("device, found, fragment", [
    ("cuda", _jax("cpu"), "device cuda requested but JAX runs on cpu"),  # the quiet fallback
    ("cuda0", _jax("cpu", "gpu"), "device cuda0 requested but JAX runs on cpu"),  # the first is used
    ("cpu", _jax("gpu"), "device cpu requested but JAX runs on gpu"),
    ("cuda", _jax(), "device cuda requested but JAX runs on nothing"),
    ("cuda", _no_gpu, "device cuda is not usable by pytensor-jax: JAX found no GPU (Unknown backend: 'cuda' "
                      "requested, but no platforms that are instances of cuda are present)"),
])
def test_jax_on_another_platform_than_asked_is_refused(device, found, fragment):
    with pytest.raises(DeviceError) as refused:
        pytensor_backend.verify_jax(named(device), found)
    assert str(refused.value) == fragment


@pytest.mark.parametrize("device, platform", [("cpu", "cpu"), ("cuda", "gpu"), ("cuda1", "gpu")])
def test_jax_on_the_platform_asked_for_gives_its_device(device, platform):
    assert pytensor_backend.verify_jax(named(device), _jax(platform, "cpu")).platform == platform


def test_each_pytensor_engine_reports_its_own_packages_and_blas():
    """What a report's versions and blas say per backend: Numba and JAX bring their own BLAS."""
    assert engines.get("pytensor").runtime.packages == ("numpy",)
    assert engines.get("pytensor-numba").runtime.packages == ("numpy", "numba")
    assert engines.get("pytensor-jax").runtime.packages == ("numpy", "jax", "jaxlib")
    for engine, linker in (("pytensor-numba", "numba"), ("pytensor-jax", "jax")):
        runtime = object.__new__(engines.get(engine).runtime)
        assert runtime.blas().to_dict() == {"ldflags": None, "library": f"{linker}'s own", "version": None,
                                            "kernels": None}


@pytest.fixture
def restored_environ(monkeypatch):
    """The variables the runtimes set, as they were before the test (set, then unset: undone)."""
    for name in ("JAX_PLATFORMS", "JAX_ENABLE_X64", "PYTENSOR_FLAGS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


@pytest.mark.engines
@pytest.mark.parametrize("found, device", [(_jax("cpu"), "cuda"), (_jax(), "cpu"), (_no_gpu, "cuda")])
def test_the_pytensor_jax_engine_refuses_what_jax_reports(monkeypatch, restored_environ, found, device):
    """The engine as `xor-gpu train` starts it, on the real PyTensor, with JAX's device list
    given: JAX_PLATFORMS is pinned to the device's platform, and a JAX that reports only the
    CPU for a cuda run is refused before anything compiles."""
    monkeypatch.setattr(pytensor_backend, "jax_devices", found)
    with pytest.raises(DeviceError, match="JAX runs on|JAX found no GPU"):
        engines.get("pytensor-jax").start(named(device), "float64")
    assert os.environ["JAX_PLATFORMS"] == ("cpu" if device == "cpu" else "cuda")
    assert os.environ["JAX_ENABLE_X64"] == "1"


@pytest.mark.engines
def test_the_pytensor_jax_engine_names_the_gpu_jax_reports(monkeypatch, restored_environ):
    monkeypatch.setattr(pytensor_backend, "jax_devices", _jax("gpu"))
    runtime = engines.get("pytensor-jax").start(named("cuda"), "float32")
    assert runtime.active_device() == ("cuda", "gpu device (JAX gpu)")


@pytest.mark.engines
@pytest.mark.parametrize("engine, other", [("pytensor", "numba"), ("pytensor-numba", "cvm"), ("pytensor", "py")])
def test_a_real_graph_compiled_by_another_linker_is_refused(engine, other, restored_environ):
    """A real PyTensor function compiled by another linker than the engine's, as a mode lost
    on the way would give: refused, naming the linker that compiled it."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode

    runtime = engines.get(engine).start(named("cpu"), "float64")
    x = pt.dvector("x")
    function = pytensor.function([x], (x * 2).sum(), mode=Mode(linker=other, optimizer="fast_run"))
    with pytest.raises(DeviceError, match=f"engine {engine} requested but PyTensor compiled with "):
        runtime.verify_graph(function)
    own = pytensor.function([x], (x * 2).sum(), mode=runtime.mode)
    assert runtime.verify_graph(own)


@pytest.mark.engines
def test_a_pytensor_jax_run_writes_nothing_to_stderr():
    """JAX's warning that it sums the float32 cost in float32 rather than the float64 PyTensor
    asks for (JAX without x64) is hidden, that one alone; nothing else is written."""
    proc = run_cli("train", "--engine", "pytensor-jax", "--device", "cpu", "--steps", "200", check=0)
    assert proc.stderr == ""
    assert pytensor_backend.JAX_FLOAT64_WARNING.startswith("Explicitly requested dtype float64")


class _Weight:
    """A shared variable whose value is `value` (what the JAX guard reads)."""

    def __init__(self, name, value):
        self.name, self._value = name, value

    def get_value(self, borrow, return_internal_type):
        assert borrow and return_internal_type  # the stored value itself, not a host copy
        return self._value


def _on(*devices):
    return types.SimpleNamespace(devices=lambda: set(devices))


@pytest.mark.parametrize("value, fragment", [
    (_on("cpu:0"), "device cuda requested but pytensor-jax kept W1 on cpu:0, not cuda:0"),
    (_on("cuda:0", "cuda:1"), "kept W1 on cuda:0, cuda:1, not cuda:0"),
    (object(), "kept W1 on the host (object), not cuda:0"),  # a numpy array: through the host
])
def test_jax_weights_that_left_the_device_are_refused(value, fragment):
    runtime = object.__new__(engines.get("pytensor-jax").runtime)
    runtime.device, runtime.jax_device = "cuda", "cuda:0"
    runtime.verify_weights([_Weight("W0", _on("cuda:0"))])
    with pytest.raises(DeviceError) as refused:
        runtime.verify_weights([_Weight("W0", _on("cuda:0")), _Weight("W1", value)])
    assert fragment in str(refused.value)
