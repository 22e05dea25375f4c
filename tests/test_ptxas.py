"""Which ptxas assembles an NVRTC's PTX (xor_gpu/ptxas.py): never one older than that NVRTC
(it refuses a newer PTX ISA: ptxas 12.4 and NVRTC 12.9's PTX 8.8), and one that knows the
architecture (CUDA 13's dropped Volta), the first such in order; and what `ptxas -v` says of
each kernel. The choice is shown with small ptxas scripts that answer --version and --help as
NVIDIA's do; the real ones run in the gpu env (tests/test_compile_only.py)."""
import pytest

from xor_gpu import ptxas

HELP = """--gpu-name <gpu name>                               (-arch)
        Specify name of NVIDIA GPU to generate code for.
        Allowed values for this option:  {allowed}.
"""


def fake_ptxas(root, version, archs):
    """ROOT/bin/ptxas of release `version` ('12.4.131') assembling for `archs`."""
    path = root / "bin" / "ptxas"
    path.parent.mkdir(parents=True, exist_ok=True)
    allowed = ",".join(f"'compute_{a}','sm_{a}'" for a in archs)
    help_text = HELP.format(allowed=allowed).replace('"', '\\"')  # echo: a builtin, whatever PATH holds
    path.write_text("#!/bin/sh\n"
                    f'if [ "$1" = --version ]; then echo "Cuda compilation tools, release '
                    f'{version.rsplit(".", 1)[0]}, V{version}"; else echo "{help_text}"; fi\n')
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def nowhere(monkeypatch, tmp_path):
    """No ptxas but the test's: no wheels on sys.path, nothing on PATH, no toolkit."""
    monkeypatch.setattr("sys.path", [])
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    for name in ("CUDA_HOME", "CUDA_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(ptxas, "TOOLKIT", str(tmp_path / "no-toolkit"))
    return tmp_path


def test_ptxas_is_looked_for_beside_the_nvrtc_then_in_cuda_home(nowhere, monkeypatch):
    toolkit = fake_ptxas(nowhere / "toolkit", "12.4.131", [70])
    (nowhere / "toolkit" / "lib64").mkdir()
    wheel = fake_ptxas(nowhere / "site" / "nvidia" / "cu13", "13.0.88", [75])
    (nowhere / "site" / "nvidia" / "cu13" / "lib").mkdir()
    home = fake_ptxas(nowhere / "home", "12.9.86", [70])
    monkeypatch.setenv("CUDA_HOME", str(nowhere / "home"))
    assert ptxas.candidates(str(nowhere / "toolkit" / "lib64" / "libnvrtc.so.12")) == [toolkit, home]
    # CUDA 13's wheels: nvidia/cu13/lib's NVRTC, nvidia/cu13/bin's ptxas.
    assert ptxas.candidates(str(nowhere / "site" / "nvidia" / "cu13" / "lib" / "libnvrtc.so.13")) == [wheel, home]
    # The nvcc wheels of this Python, CUDA 12's and 13's.
    monkeypatch.setattr("sys.path", [str(nowhere / "site")])
    assert ptxas.candidates() == [wheel, home]


def test_the_first_ptxas_as_new_as_the_nvrtc_that_knows_the_architecture_is_chosen(nowhere, monkeypatch):
    old = fake_ptxas(nowhere / "toolkit", "12.4.131", [70, 75, 90])
    (nowhere / "toolkit" / "lib64").mkdir()
    new = fake_ptxas(nowhere / "home", "13.0.88", [75, 90, 100])
    monkeypatch.setenv("CUDA_HOME", str(nowhere / "home"))
    nvrtc = str(nowhere / "toolkit" / "lib64" / "libnvrtc.so.12")
    # NVRTC 12.4's PTX for sm_90: the one beside it.
    assert ptxas.choose(nvrtc, (12, 4), "sm_90") == (old, "12.4.131", [])
    # NVRTC 13.0's PTX: ptxas 12.4 would refuse its ISA.
    assert ptxas.choose(nvrtc, (13, 0), "sm_90") == (new, "13.0.88", [
        f"{old}: ptxas 12.4.131 is older than NVRTC 13.0, whose PTX it would refuse, skipped"])
    # NVRTC 12.4's PTX for sm_70: ptxas 13.0 is newer, and cannot assemble for Volta.
    assert ptxas.choose(str(nowhere / "elsewhere" / "libnvrtc.so.12"), (12, 4), "sm_70") == (None, None, [
        f"{new}: ptxas 13.0.88 cannot assemble for sm_70, skipped"])


def test_ptxas_figures_are_read_per_kernel():
    log = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'elem' for 'sm_90'
ptxas info    : Function properties for elem
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 18 registers, 380 bytes cmem[0]
ptxas info    : Compiling entry function 'kernel_reduce_11' for 'sm_90'
ptxas info    : Function properties for kernel_reduce_11
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 22 registers, 392 bytes cmem[0]
"""
    assert ptxas.parse(log) == {
        "elem": {"stack_bytes": 8, "spill_stores": 4, "spill_loads": 12, "registers": 18},
        "kernel_reduce_11": {"stack_bytes": 0, "spill_stores": 0, "spill_loads": 0, "registers": 22},
    }
