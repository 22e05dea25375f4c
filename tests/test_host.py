"""Host introspection: the CPU's name, the portable compiler flags, and the BLAS library a C
engine links, found on disk and then in this process's memory map."""
import ctypes.util
import json
import os
import platform
import subprocess
import sys

import pytest

from xor_gpu import host
from xor_gpu.results.train_report import Blas, BlasKernels
from xorlib import on_a_cpu_lacking, one_line_error


def test_cpu_name_is_the_model_name_of_proc_cpuinfo():
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    assert host.cpu_name() == (names[0] if names else platform.processor() or platform.machine())


def test_portable_flags_never_ask_for_the_building_cpu():
    flags = host.portable_cxxflags()
    assert "native" not in flags
    assert flags == {"x86_64": "-march=x86-64 -mtune=generic",
                     "aarch64": "-march=armv8-a -ffp-contract=off"}.get(platform.machine(), "")


def test_no_architecture_lets_the_compiler_fuse_multiply_adds():
    """x86-64's baseline has no FMA instruction; where every CPU has one, contraction is off,
    so that compiled modules compute as written on every node, whatever its g++."""
    for machine, flags in host.PORTABLE_CXXFLAGS.items():
        assert machine == "x86_64" or "-ffp-contract=off" in flags.split(), (machine, flags)


def test_empty_ldflags_mean_numpys_c_api():
    assert host.blas_of("  ") == Blas(ldflags="", library=host.NUMPY_BLAS)
    assert host.blas_of("  ").to_dict() == {"ldflags": "", "library": host.NUMPY_BLAS, "version": None, "kernels": None}


def test_linked_files_follow_the_l_options_folders_first(monkeypatch, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        (folder / "libfast.so").write_bytes(b"")
    (second / "libother.so.3").write_bytes(b"")
    monkeypatch.setattr(host, "standard_folders", lambda: [str(second)])
    monkeypatch.setenv("LD_LIBRARY_PATH", "")
    assert host.linked_files(f"-L{first} -lfast -l:libother.so.3 -lmissing") == [
        str(first / "libfast.so"), str(second / "libfast.so"), str(second / "libother.so.3")]
    # Found on disk but not loaded by this process: no library, no version.
    assert host.blas_of(f"-L{first} -lfast") == Blas(ldflags=f"-L{first} -lfast")


def test_a_loaded_openblas_is_found_in_the_memory_map_with_its_version():
    """In a fresh process: before OpenBLAS is loaded it is not reported, after, it is, with
    OpenBLAS's own description of itself."""
    assert host.default_blas_ldflags() == f"-l:{host.OPENBLAS}", "install libopenblas0 (scripts/bootstrap does)"
    code = ("import ctypes, json, sys; from xor_gpu import host\n"
            "before = host.blas_of(sys.argv[1])\n"
            "ctypes.CDLL('libopenblas.so.0')\n"
            "print(json.dumps([before.to_dict(), host.blas_of(sys.argv[1]).to_dict()]))")
    proc = subprocess.run([sys.executable, "-c", code, f"-l:{host.OPENBLAS}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    before, after = json.loads(proc.stdout)
    assert before["library"] is None and before["version"] is None
    assert os.path.realpath(after["library"]) == after["library"] and "openblas" in after["library"]
    assert after["version"].startswith("OpenBLAS ")
    assert host.openblas_config(ctypes.util.find_library("c")) is None  # not OpenBLAS


def test_the_installed_blas_is_found_on_disk_before_anything_loads_it():
    """What `doctor` reports: the library the default ldflags link, found without importing an
    engine, the same file, version and kernels a run then finds in its memory map."""
    code = ("import json; from xor_gpu import host\n"
            "loaded = sorted(host.loaded_files()); installed = host.installed_blas()\n"
            "print(json.dumps([loaded, installed.to_dict(), host.blas_of(installed.ldflags).to_dict()]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    loaded, blas, run = json.loads(proc.stdout)
    assert blas["ldflags"] == host.default_blas_ldflags() == f"-l:{host.OPENBLAS}"
    assert blas["library"] not in loaded and blas["library"] == host.linked_files(blas["ldflags"])[0]
    assert blas == run and blas["version"].startswith("OpenBLAS ")


def test_without_openblas_the_installed_blas_is_numpys_c_api(monkeypatch):
    monkeypatch.setattr(host, "default_blas_ldflags", lambda: "")
    assert host.installed_blas() == Blas(ldflags="", library=host.NUMPY_BLAS)


# --- OpenBLAS's kernels ---------------------------------------------------------------------

FAMILY, NEEDS = host.OPENBLAS_KERNELS.get(platform.machine(), (None, ()))


def test_the_package_chooses_its_kernels_where_the_cpu_has_their_instructions(monkeypatch):
    monkeypatch.setattr(host.platform, "machine", lambda: "x86_64")
    family, needs = host.OPENBLAS_KERNELS["x86_64"]
    assert host.openblas_kernels({}, {"sse2", *needs}) == BlasKernels(family=family, chosen_by="xor_gpu")
    # A CPU without them: OpenBLAS's own detection, saying why (never kernels the CPU lacks).
    lacking = host.openblas_kernels({}, {"sse2", "avx"})
    assert lacking.family is None and lacking.chosen_by == f"OpenBLAS (this CPU lacks {' and '.join(needs)})"
    # The user's own variable wins, whatever the CPU.
    assert host.openblas_kernels({"OPENBLAS_CORETYPE": "Nehalem"}, set()) == BlasKernels(
        family="Nehalem", chosen_by="OPENBLAS_CORETYPE")


def test_aarch64_pins_plain_neon_kernels_on_every_cpu(monkeypatch):
    """armv8 needs nothing beyond what every arm64 CPU has: no flags are read (under emulation
    /proc/cpuinfo is the host's)."""
    monkeypatch.setattr(host.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(host, "cpu_flags", lambda: pytest.fail("read the CPU flags"))
    assert host.openblas_kernels({}) == BlasKernels(family="armv8", chosen_by="xor_gpu")
    monkeypatch.setattr(host.platform, "machine", lambda: "riscv64")
    assert host.openblas_kernels({}) == BlasKernels(chosen_by="OpenBLAS (none pinned for riscv64)")


def test_a_kernel_family_is_held_against_the_cpus_instructions(monkeypatch):
    monkeypatch.setattr(host.platform, "machine", lambda: "x86_64")
    haswell = {"sse2", "avx", "avx2", "fma"}
    problem, fix = host.kernels_problem({"OPENBLAS_CORETYPE": "SkylakeX"}, haswell)
    assert problem.startswith("OPENBLAS_CORETYPE=SkylakeX names OpenBLAS kernels that need avx512f, avx512cd, "
                              "avx512bw, avx512dq, avx512vl, which this CPU (")
    assert fix == "unset OPENBLAS_CORETYPE, or name a family this CPU runs (e.g. Haswell)"
    assert host.kernels_problem({"OPENBLAS_CORETYPE": "haswell"}, haswell) is None  # OpenBLAS ignores case too
    assert host.kernels_problem({"OPENBLAS_CORETYPE": "Bobcat"}, haswell) is None  # not listed: OpenBLAS's affair
    assert host.kernels_problem({}, set()) is None  # the package's own choice asks the CPU first
    assert "(e.g. Prescott)" in host.kernels_problem({"OPENBLAS_CORETYPE": "Haswell"}, {"sse2", "pni"})[1]


def test_a_kernel_family_the_cpu_lacks_exits_3_naming_it_before_openblas_loads(tmp_path):
    """A site-wide OPENBLAS_CORETYPE=SkylakeX on a node without AVX-512: OpenBLAS would run
    it and die of SIGILL at the first call; the run refuses it in one line instead."""
    argv = on_a_cpu_lacking("SkylakeX", [sys.executable, "-m", "xor_gpu", "train", "--device", "cpu", "--steps", "5"],
                            tmp_path)
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "OPENBLAS_CORETYPE": "SkylakeX"})
    one_line_error(proc, 3, "OPENBLAS_CORETYPE=SkylakeX names OpenBLAS kernels that need avx512f, avx512cd, "
                            "avx512bw, avx512dq, avx512vl, which this CPU")


def _loaded_kernels(env_extra):
    """In a fresh process: load OpenBLAS as an engine does, report what it runs."""
    code = ("import json, os; from xor_gpu import host\n"
            "ldflags = host.default_blas_ldflags()\n"
            "chosen = host.load_blas(ldflags)\n"
            "print(json.dumps([chosen.to_dict(), host.blas_of(ldflags).to_dict(), os.environ.get('OPENBLAS_CORETYPE')]))")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, **env_extra})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.skipif(not NEEDS or not set(NEEDS) <= host.cpu_flags(), reason="this CPU lacks the pinned kernels' "
                    "instructions: the test below covers the user's choice")
def test_a_run_loads_openblas_with_the_pinned_kernels_and_leaves_the_environment_alone():
    chosen, blas, after = _loaded_kernels({})
    assert chosen == {"family": FAMILY, "chosen_by": "xor_gpu"}
    assert blas["kernels"] == chosen and FAMILY in blas["version"]
    assert after is None  # children choose for themselves


def test_the_users_coretype_wins_and_the_report_says_so():
    chosen, blas, after = _loaded_kernels({"OPENBLAS_CORETYPE": "Prescott"})
    assert blas["kernels"] == chosen == {"family": "Prescott", "chosen_by": "OPENBLAS_CORETYPE"}
    assert after == "Prescott"



def test_caches_go_where_xdg_says_else_under_home():
    assert host.cache_folder("theano", {"XDG_CACHE_HOME": "/x"}) == "/x/xor_gpu/theano"
    assert host.cache_folder("cuda-libs", {}) == os.path.join(os.path.expanduser("~"), ".cache", "xor_gpu",
                                                              "cuda-libs")
