"""The aarch64 offline bundle (Grace Hopper nodes), for real: built from Debian's arm64 packages
and the aarch64 wheels as the README says, then run on an emulated aarch64 node (arm64lib):
training on the CPU is bitwise the aarch64 reference's, run after run, `check --device cpu`
passes, every CUDA kernel compiles for sm_90 with NVIDIA's aarch64 NVRTC, cuBLAS and ptxas,
and a bundle or a g++ for another machine is refused with one line.

Not run: the device tests on OpenCL. PoCL compiles its kernels with LLVM at run time, which
would itself run emulated (docs/gpu-validation.md says what that costs).
"""
import hashlib
import io
import json
import platform
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

from arm64lib import ARCHIVE, BUILD_BLOCK, MACHINE, REFERENCE_BLOCK
from bundlelib import setup_py_pins, tail
from docblocks import explain, run_block
from xor_gpu import compare
from xor_gpu.results.runs import Difference, TrainRun
from xor_gpu.results.train_report import BlasKernels, TrainReport

pytestmark = pytest.mark.arm64

MAX_BYTES = 62 * 2**20  # the x86-64 bundle's budget (tests/bundle)
EM_AARCH64 = 183  # ELF e_machine
DIST = [ARCHIVE, f"{ARCHIVE}.sha256", "xor_gpu-bundle-run.sh"]


def _elf_machine(data):
    assert data[:4] == b"\x7fELF", data[:4]
    return int.from_bytes(data[18:20], "little")


def _run(node, home, args, cwd, timeout=900, **env):
    """The launcher beside the archive, on the node: `bash xor_gpu-bundle-run.sh ARGS` with its bash."""
    home.mkdir(exist_ok=True)
    return subprocess.run([node.bash, str(cwd / "xor_gpu-bundle-run.sh"), *map(str, args)], cwd=cwd,
                          env=node.env(home, **env), capture_output=True, text=True, timeout=timeout)


def _one_line(proc, status, text):
    assert proc.returncode == status, tail(proc.stdout + proc.stderr)
    assert proc.stdout == "" and proc.stderr.splitlines() == [f"run.sh: error: {text}"], proc.stderr


# --- the archive -------------------------------------------------------------------------

@pytest.mark.parametrize("doc", [BUILD_BLOCK], ids=str)
def test_the_documented_build_leaves_the_archive_and_the_launcher(doc, dist):
    assert sorted(p.name for p in dist.iterdir()) == DIST
    digest, name = (dist / DIST[1]).read_text().split()
    assert name == DIST[0] and digest == hashlib.sha256((dist / DIST[0]).read_bytes()).hexdigest()


def test_the_archive_is_for_aarch64_with_the_pins_of_setup_py(archive):
    assert 0 < archive.stat().st_size <= MAX_BYTES, f"{archive.stat().st_size / 2**20:.1f} MiB"
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("xor_gpu-bundle/MANIFEST.json"))
        names = set(tar.getnames())
        python = tar.extractfile("xor_gpu-bundle/root/usr/bin/python3.11").read(64)
        numpy = next(n for n in names if n.startswith("xor_gpu-bundle/root/usr/lib/python3/dist-packages/numpy/core/"
                                                      "_multiarray_umath") and n.endswith(".so"))
        numpy_elf = tar.extractfile(numpy).read(64)
    assert (manifest["architecture"], manifest["machine"]) == ("arm64", MACHINE)
    assert _elf_machine(python) == _elf_machine(numpy_elf) == EM_AARCH64
    root = "xor_gpu-bundle/root/usr"
    for required in ("include/aarch64-linux-gnu/python3.11/pyconfig.h", "lib/aarch64-linux-gnu/libpython3.11.so",
                     "lib/aarch64-linux-gnu/libopenblas.so.0", "lib/aarch64-linux-gnu/libclblast.so",
                     "lib/python3/dist-packages/xor_gpu/reference/seed-cpu-float32-aarch64.json"):
        assert f"{root}/{required}" in names, required
    assert not any("x86_64" in n for n in names), sorted(n for n in names if "x86_64" in n)[:5]
    wheels = {w.split("-")[0].lower(): w.split("-")[1] for w in manifest["wheels"]}
    assert all(w.endswith(("none-any.whl", "aarch64.whl")) for w in manifest["wheels"]), manifest["wheels"]
    for name, version in setup_py_pins(manifest["extras"]).items():
        assert name in manifest["left_out"] or wheels.get(name) == version, (name, version)


# --- the launcher refuses what this machine cannot run ------------------------------------

@pytest.mark.skipif(platform.machine() == MACHINE, reason="this machine is aarch64: it runs the bundle")
def test_this_machine_refuses_the_aarch64_bundle_before_unpacking_it(dist, tmp_path):
    """The same launcher on x86-64: its own bundle by default; the aarch64 one when named is
    refused, one line, nothing unpacked (an exec error otherwise, or a bundle run under
    emulation by accident)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    named = subprocess.run(["bash", "xor_gpu-bundle-run.sh", "--bundle", DIST[0], "doctor"], cwd=dist, env=env,
                           capture_output=True, text=True, timeout=60)
    _one_line(named, 3, f"this bundle is for {MACHINE} machines, not {platform.machine()}")
    assert list(home.iterdir()) == []
    default = subprocess.run(["bash", "xor_gpu-bundle-run.sh", "doctor"], cwd=dist, env=env, capture_output=True,
                             text=True, timeout=60)
    _one_line(default, 2, f"no bundle: {dist}/xor_gpu-bundle.tar.gz not found (give it with --bundle FILE)")


def test_the_node_refuses_a_bundle_for_another_machine(node, dist, tmp_path):
    """An x86-64 bundle (its manifest, enough for the launcher) given to the aarch64 node."""
    other = tmp_path / "dist"
    other.mkdir()
    shutil.copy(dist / DIST[2], other)
    manifest = json.dumps({"schema": "xor_gpu.bundle/1", "architecture": "amd64", "machine": "x86_64"}).encode()
    with tarfile.open(other / "xor_gpu-bundle.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("xor_gpu-bundle/MANIFEST.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    proc = _run(node, tmp_path / "home", ["--bundle", "xor_gpu-bundle.tar.gz", "doctor"], other)
    _one_line(proc, 3, f"this bundle is for x86_64 machines, not {MACHINE}")


def test_the_node_refuses_a_g_plus_plus_for_another_machine(node, dist, tmp_path):
    """This machine's own g++ first on the node's PATH: Theano would build modules the node's
    Python cannot load."""
    own = tmp_path / "own"
    own.mkdir()
    (own / "g++").symlink_to(shutil.which("g++"))
    target = subprocess.run(["g++", "-dumpmachine"], capture_output=True, text=True).stdout.strip()
    proc = _run(node, tmp_path / "home", ["doctor"], dist, PATH=f"{own}:{node.env(tmp_path)['PATH']}")
    _one_line(proc, 3, f"g++ on PATH compiles for {target}, not for this {MACHINE}")


# --- training on the node: the aarch64 reference, bit for bit ------------------------------

@pytest.fixture(scope="session")
def trained(node, documented_build, tmp_path_factory):
    """The reference's regeneration as docs/reference.md shows it (a cold run), then a second
    run: {"regenerated", "again"} reports, and the block's process."""
    tree, _ = documented_build
    home = tmp_path_factory.mktemp("train-home")
    proc = run_block(REFERENCE_BLOCK, tree, env=node.env(home), timeout=1800)
    assert proc.returncode == 0, explain(REFERENCE_BLOCK, proc)
    again = _run(node, home, ["train", "--device", "cpu", "--json", tree / "again.json"], tree / "dist")
    assert again.returncode == 0, tail(again.stdout + again.stderr)
    read = lambda path: TrainReport.from_dict(json.loads(path.read_text()), str(path))  # noqa: E731
    return {"regenerated": read(tree / "xor_gpu" / "reference" / "seed-cpu-float32-aarch64.json"),
            "again": read(tree / "again.json"), "block": proc, "home": home, "tree": tree}


@pytest.mark.parametrize("doc", [REFERENCE_BLOCK], ids=str)
def test_training_on_the_node_is_bitwise_the_aarch64_reference_run_after_run(doc, trained):
    reference = compare.reference_of(compare.BUILTIN, MACHINE).report
    for report in (trained["regenerated"], trained["again"]):
        assert report.converged and report.device.active == "cpu"
        assert report.blas.kernels == BlasKernels(family="armv8", chosen_by="xor_gpu"), report.blas
        assert TrainRun("node", report).machine() == MACHINE and report.origin["package"]["kind"] == "bundle"
        assert report.weights_sha256 == reference.weights_sha256, report.blas
    assert trained["regenerated"].new_compiled_modules > 0 and trained["again"].new_compiled_modules == 0


def test_the_aarch64_reference_is_within_tolerance_of_the_x86_64_one():
    """Two references, one per architecture (docs/reference.md): measured bitwise equal today,
    held only to the tolerance."""
    x86, arm = (compare.reference_of(compare.BUILTIN, m).report for m in ("x86_64", MACHINE))
    diff = Difference.between(x86, arm)
    assert diff.max_abs_prediction_diff <= compare.DEFAULT_ATOL and diff.max_rel_loss_diff <= compare.DEFAULT_RTOL
    print(f"aarch64 reference vs x86-64 reference: {diff}")


def test_compare_on_the_node_holds_its_run_against_the_aarch64_reference(node, trained):
    tree = trained["tree"]
    proc = _run(node, trained["home"], ["compare", tree / "again.json", "--reference", "builtin", "--json",
                                        tree / "compare.json"], tree / "dist")
    assert proc.returncode == 0, tail(proc.stdout + proc.stderr)
    result = json.loads((tree / "compare.json").read_text())
    reference = compare.reference_of(compare.BUILTIN, MACHINE).report
    assert result["reference"]["where"] == TrainRun(compare.BUILTIN, reference).where()
    assert result["rows"][0]["bitwise_equal"] is True


def test_check_on_the_cpu_passes_on_the_node(node, trained, tmp_path):
    tree = trained["tree"]
    proc = _run(node, trained["home"], ["check", "--device", "cpu", "--out", tmp_path / "check"], tree / "dist",
                timeout=1800)
    assert proc.returncode == 0, tail(proc.stdout + proc.stderr)
    summary = json.loads((tmp_path / "check" / "summary.json").read_text())
    steps = {s["name"]: s["status"] for s in summary["steps"]}
    assert summary["passed"] and steps == {"doctor": "passed", "train": "passed", "determinism": "passed",
                                           "parity": "skipped", "reference": "passed"}, steps
    assert summary["reference"]["origin"] == compare.reference_of(compare.BUILTIN, MACHINE).report.origin
    assert summary["runs"]["cpu"]["weights_sha256"] == summary["reference"]["weights_sha256"]


# --- a login node of a Grace Hopper cluster: every kernel for sm_90, NVIDIA's aarch64 wheels --

@pytest.fixture(scope="session")
def nvidia_aarch64(tmp_path_factory):
    """The cuda extra's pins (setup.py) as NVIDIA's aarch64 wheels, unpacked: NVRTC, cuBLAS and
    the nvcc wheel's ptxas, as a node's `pip install` would have them."""
    base = tmp_path_factory.mktemp("nvidia-aarch64")
    pins = setup_py_pins(["cuda"])
    wanted = [f"{name}=={version}" for name, version in pins.items() if name.startswith("nvidia")]
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                           "--platform", f"manylinux2014_{MACHINE}", "-d", str(base / "wheels"), *wanted],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, tail(proc.stderr)
    for wheel in sorted((base / "wheels").glob("*.whl")):
        with zipfile.ZipFile(wheel) as z:
            for info in z.infolist():
                z.extract(info, base / "site")
                if info.external_attr >> 16 & 0o111:  # ptxas: zipfile drops the mode
                    (base / "site" / info.filename).chmod(0o755)
        wheel.unlink()
    return base / "site" / "nvidia"


def test_every_cuda_kernel_compiles_for_sm_90_with_the_aarch64_nvidia_wheels(node, dist, nvidia_aarch64, tmp_path):
    out = tmp_path / "compile-only.json"
    libs = ["--cuda-libs", nvidia_aarch64 / "cuda_nvrtc" / "lib", "--cuda-libs", nvidia_aarch64 / "cublas" / "lib"]
    proc = _run(node, tmp_path / "home", [*libs, "doctor", "--device", "cuda", "--compile-only", "--arch", "sm_90",
                                          "--json", out], dist, timeout=1800)
    assert proc.returncode == 0, tail(proc.stdout + proc.stderr)
    data = json.loads(out.read_text())
    assert data["executed"] is False and data["libgpuarray_arch"] == "compute_90" and data["problems"] == []
    assert data["nvrtc"]["path"].startswith(str(nvidia_aarch64)) and data["cublas"]["names"]["missing"] == []
    assert data["ptxas"]["path"].startswith(str(nvidia_aarch64))  # NVIDIA's aarch64 ptxas, emulated
    assert _elf_machine((nvidia_aarch64 / "cuda_nvcc" / "bin" / "ptxas").read_bytes()[:64]) == EM_AARCH64
    assert len(data["kernels"]) > 20 and all(k["target"] == "sm_90" and k["registers"] > 0 for k in data["kernels"])
