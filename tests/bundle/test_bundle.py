"""The offline GPU bundle (bundle/): built as CI builds it, unpacked into an empty folder and
dry-run for real on OpenCL (PoCL on the CPU) with the host's Python hidden and poisoned.

The build needs apt-get download (Debian bookworm, root or fresh package lists) and PyPI;
XOR_GPU_BUNDLE=path/to/xor_gpu-bundle.tar.gz uses a prebuilt archive instead. The dry run
needs g++ and an OpenCL ICD for platform 0 (pocl-opencl-icd), as the opencl env does.
"""
import hashlib
import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import subprocess
import tarfile

import pytest

pytestmark = pytest.mark.bundle

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = REPO / "bundle" / "build.sh"
RUN = REPO / "bundle" / "run.sh"
SBATCH = REPO / "bundle" / "slurm" / "xor_gpu_check.sbatch"
MAX_BYTES = 64 * 1024 * 1024  # what one call to the lent GPU machine can carry
DEVICE = "opencl0:0"
PARITY_STEPS = 40000  # converges (the seed config's loss passes 0.25 near step 30,000)
LEFT_OUT = {"scipy"}  # Theano imports it only optionally; see bundle/build.sh
# What run.sh leaves in --out: at most 8 files come back from a call to the GPU machine.
OUTPUTS = {"run.log", "summary.json", "doctor.json", "train.json", "train.png", "parity.json", "parity.png"}
HIDDEN_TOOLS = ("python", "python3", "python3.11", "pip", "pip3")


def _tail(text, n=6000):
    return text[-n:]


def test_scripts_pass_shellcheck():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed (apt-get install shellcheck); CI installs it")
    proc = subprocess.run([shellcheck, "--severity=style", str(BUILD), str(RUN), str(SBATCH)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_run_refuses_bad_arguments_before_doing_anything(tmp_path):
    for args, message in ((["--device", "cpu"], "the CPU is the reference"),
                          (["--steps", "0"], "--steps must be a positive integer"),
                          (["--cuda-libs", str(tmp_path / "nope")], "no such folder"),
                          (["--frobnicate"], "unknown argument")):
        proc = subprocess.run(["bash", str(RUN), *args, "--out", str(tmp_path / "out")],
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="session")
def archive(tmp_path_factory):
    prebuilt = os.environ.get("XOR_GPU_BUNDLE")
    if prebuilt:
        path = pathlib.Path(prebuilt).resolve()
        assert path.is_file(), f"XOR_GPU_BUNDLE={prebuilt}: no such file"
        return path
    path = tmp_path_factory.mktemp("bundle-build") / "xor_gpu-bundle.tar.gz"
    proc = subprocess.run(["bash", str(BUILD), "--out", str(path)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"bundle/build.sh failed:\n{_tail(proc.stderr)}"
    return path


def _pins(extras):
    """{name: version} of xor_gpu's pinned requirements with the extras the bundle carries."""
    pins = {}
    for req in importlib.metadata.requires("xor_gpu") or []:
        spec, _, marker = req.partition(";")
        extra = re.search(r"""extra\s*==\s*['"](\w+)['"]""", marker)
        if extra and extra.group(1) not in extras:
            continue
        name, _, version = spec.replace(" ", "").partition("==")
        pins[re.sub(r"[-_.]+", "_", name).lower()] = version
    return pins


def test_archive_is_one_small_self_contained_tree(archive):
    size = archive.stat().st_size
    assert 0 < size <= MAX_BYTES, f"{size / 2**20:.1f} MiB"
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        manifest = json.load(tar.extractfile("xor_gpu-bundle/MANIFEST.json"))
    names = {m.name for m in members}
    for m in members:
        assert m.name == "xor_gpu-bundle" or m.name.startswith("xor_gpu-bundle/"), m.name
        assert ".." not in m.name.split("/"), m.name
        if m.issym():  # links stay inside the bundle
            target = os.path.normpath(os.path.join(os.path.dirname(m.name), m.linkname))
            assert not m.linkname.startswith("/") and target.startswith("xor_gpu-bundle/"), (m.name, m.linkname)
    for required in ("run.sh", "MANIFEST.json", "root/usr/bin/python3.11", "root/usr/include/python3.11/Python.h",
                     "root/usr/include/x86_64-linux-gnu/python3.11/pyconfig.h", "root/usr/lib/libgpuarray.so",
                     "root/usr/lib/python3/dist-packages/pygpu/__init__.py",
                     "root/usr/lib/python3/dist-packages/xor_gpu/cli.py", "app/tests/conftest.py",
                     "app/tests/test_device.py"):
        assert f"xor_gpu-bundle/{required}" in names, required
    assert not any(n.startswith("xor_gpu-bundle/app/tests/bundle") for n in names)
    # The wheels are exactly setup.py's pins (xor_gpu[gpu,plot,test]), less what is left out.
    # (NVIDIA's libraries, the cuda extra, come from the node.)
    wheels = {re.sub(r"[-_.]+", "_", w.split("-")[0]).lower(): w.split("-")[1] for w in manifest["wheels"]}
    assert set(manifest["left_out"]) == LEFT_OUT
    assert {"gpu", "test"} <= set(manifest["extras"]) and "cuda" not in manifest["extras"]
    for name, version in _pins(manifest["extras"]).items():
        if name in LEFT_OUT:
            assert name not in wheels
        else:
            assert wheels.get(name) == version, (name, version, wheels.get(name))
    assert {"python3.11-minimal", "libpython3.11-dev", "python3-pygpu", "libgpuarray3"} <= set(manifest["debian_packages"])


def test_build_leaves_the_runner_and_checksum_beside_the_archive(archive):
    if os.environ.get("XOR_GPU_BUNDLE"):
        pytest.skip("a prebuilt archive was given (XOR_GPU_BUNDLE); the build's outputs are checked when it is built")
    runner = archive.with_name("xor_gpu-bundle-run.sh")
    assert runner.read_bytes() == RUN.read_bytes() and os.access(runner, os.X_OK)
    digest, name = archive.with_name("xor_gpu-bundle.tar.gz.sha256").read_text().split()
    assert name == archive.name and digest == hashlib.sha256(archive.read_bytes()).hexdigest()


def _hidden_host_python(base):
    """An environment whose python/pip on PATH, PYTHONPATH, PYTHONHOME, user site and
    THEANO_FLAGS would all break or be recorded if run.sh let any of them through."""
    marker = base / "host-python-used"
    shims = base / "shims"
    shims.mkdir()
    for name in HIDDEN_TOOLS:
        shim = shims / name
        shim.write_text(f'#!/bin/sh\necho "{name} $*" >> "{marker}"\nexit 97\n')
        shim.chmod(0o755)
    poison = base / "poison"
    (poison / "numpy").mkdir(parents=True)
    (poison / "numpy" / "__init__.py").write_text("raise ImportError('the host PYTHONPATH leaked into the bundle')\n")
    (poison / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'a').write('sitecustomize\\n')\n")
    env = {
        "PATH": f"{shims}:/usr/bin:/bin",
        "HOME": str(base / "home"),
        "TMPDIR": str(base / "tmp"),
        "PYTHONPATH": str(poison),
        "PYTHONHOME": str(poison),
        "PYTHONUSERBASE": str(poison),
        "VIRTUAL_ENV": str(poison),
        "PYTHONHASHSEED": "random",
        "THEANO_FLAGS": "device=cuda,floatX=float64,blas.ldflags=-lno_such_blas",
        "XOR_GPU_COMPILEDIR": str(poison / "compiledir"),
    }
    for d in ("home", "tmp"):
        (base / d).mkdir()
    return env, marker


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="session")
def dry_run(archive, tmp_path_factory):
    """The bundle unpacked into an empty folder, run.sh run from there on OpenCL."""
    base = tmp_path_factory.mktemp("bundle-dry-run")
    unpacked = base / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(unpacked)], check=True)
    bundle = unpacked / "xor_gpu-bundle"
    before = _tree(unpacked)
    env, marker = _hidden_host_python(base)
    out = base / "out"
    proc = subprocess.run(["bash", str(bundle / "run.sh"), "--device", DEVICE, "--out", str(out),
                           "--steps", str(PARITY_STEPS), "--tests", "device and not slow"],
                          env=env, cwd=base, capture_output=True, text=True, timeout=1500)
    return {"proc": proc, "bundle": bundle, "out": out, "marker": marker, "tmp": base / "tmp",
            "unpacked": unpacked, "tree_before": before}


def _json(run, name):
    return json.loads((run["out"] / name).read_text())


def test_dry_run_passes_every_step(dry_run):
    proc = dry_run["proc"]
    assert proc.returncode == 0, f"run.sh exit {proc.returncode}:\n{_tail(proc.stdout + proc.stderr)}"
    summary = _json(dry_run, "summary.json")
    assert summary["passed"] is True and summary["device"] == DEVICE
    assert [s["step"] for s in summary["steps"]] == ["doctor", "train", "parity", "tests"]
    assert all(s["exit_status"] == 0 for s in summary["steps"]), summary["steps"]
    tests = summary["tests"]
    assert tests["tests"] > 0 and tests["failures"] == tests["errors"] == 0, tests
    assert "RESULT: PASS" in (dry_run["out"] / "run.log").read_text()


def test_dry_run_writes_only_its_reports_into_out(dry_run):
    assert {p.name for p in dry_run["out"].iterdir()} == OUTPUTS
    for png in ("train.png", "parity.png"):
        assert (dry_run["out"] / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    log = (dry_run["out"] / "run.log").read_text()
    for step in ("doctor", "train", "parity", "tests"):
        assert f"===== {step}: exit 0" in log, step


def test_dry_run_trains_the_seed_config_on_the_device(dry_run):
    train = _json(dry_run, "train.json")
    assert train["device"]["requested"] == train["device"]["active"] == DEVICE
    assert train["config"]["steps"] == 60000 and train["floatX"] == "float32"
    assert train["converged"] is True
    assert any(op.startswith("GpuDot22") or op.startswith("GpuGemm") for op in train["ops"]), train["ops"]
    doctor = _json(dry_run, "doctor.json")
    assert doctor["opencl_devices"], doctor


def test_dry_run_parity_is_within_tolerance(dry_run):
    parity = _json(dry_run, "parity.json")
    assert parity["passed"] is True and parity["converged"] is True and parity["failures"] == {}
    assert parity["devices"] == ["cpu", DEVICE] and parity["config"]["steps"] == PARITY_STEPS
    diff = parity["differences"][DEVICE]
    assert diff["max_abs_prediction_diff"] <= parity["tolerances"]["atol_predictions"] <= 1e-4
    assert diff["max_rel_loss_diff"] <= parity["tolerances"]["rtol_loss_history"] <= 1e-3


def test_dry_run_uses_only_the_bundles_python(dry_run):
    """The host's python/pip were never called, its PYTHONPATH/PYTHONHOME/THEANO_FLAGS never
    reached the bundle, and every module and library came from the unpacked bundle."""
    assert not dry_run["marker"].exists(), dry_run["marker"].read_text()
    root = dry_run["bundle"] / "root"
    env = _json(dry_run, "summary.json")["environment"]
    assert env["sys_executable"] == str(root / "usr" / "bin" / "python3.11")
    assert env["python_version"].startswith("3.11.")
    for module, path in env["modules"].items():
        assert path.startswith(str(root) + "/"), (module, path)
    assert env["libgpuarray"] and all(p.startswith(str(root) + "/") for p in env["libgpuarray"]), env["libgpuarray"]
    assert f"-I{root}/usr/include" in env["theano_flags"] and "device=cuda" not in env["theano_flags"]
    assert str(root) in _json(dry_run, "doctor.json")["python"]


def test_dry_run_leaves_the_bundle_untouched_and_cleans_up(dry_run):
    assert _tree(dry_run["unpacked"]) == dry_run["tree_before"]  # no __pycache__, caches or reports inside
    assert list(dry_run["tmp"].iterdir()) == []  # the temp folder is removed


def test_runner_beside_the_archive_unpacks_it_and_says_when_cuda_is_missing(archive, tmp_path):
    """The way the GPU machine runs it (dist/ carried): the runner finds the archive beside
    itself. Without an NVIDIA driver, setup stops with exit 3 and one clear line."""
    if subprocess.run(["sh", "-c", "ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1 '"]).returncode == 0:
        pytest.skip("this machine has an NVIDIA driver: the missing-driver path cannot be shown here")
    dist = tmp_path / "dist"
    dist.mkdir()
    shutil.copy(archive, dist / "xor_gpu-bundle.tar.gz")
    shutil.copy(RUN, dist / "xor_gpu-bundle-run.sh")
    env, marker = _hidden_host_python(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(dist / "xor_gpu-bundle-run.sh"), "--device", "cuda", "--out", str(out)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr  # run.sh sends both through its log
    assert proc.returncode == 3, output
    assert "unpacking" in output and "libcuda.so.1 was not found" in output
    assert "libcuda.so.1 was not found" in (out / "run.log").read_text()
    assert list((tmp_path / "tmp").iterdir()) == []
    assert not marker.exists()


FAKE_LIBS = {  # name: (folder under the fake site-packages' nvidia/, C source)
    "libnvrtc.so.13": ("cu13/lib", "int nvrtcVersion(int *a, int *b) { *a = 13; *b = 0; return 0; }"),
    "libnvrtc-builtins.so.13.0": ("cu13/lib", "int x;"),
    "libcublas.so.13": ("cu13/lib", "int cublasGetProperty(int t, int *v) { int p[3] = {13, 0, 0}; *v = p[t]; return 0; }"),
    "libcublasLt.so.13": ("cu13/lib", "int x;"),
    "libnvrtc.so.12": ("cuda_nvrtc/lib", "int nvrtcVersion(int *a, int *b) { *a = 12; *b = 4; return 0; }"),
    "libnvrtc-builtins.so.12.4": ("cuda_nvrtc/lib", "int x;"),
    "libcublas.so.12": ("cublas/lib", "int cublasGetProperty(int t, int *v) { int p[3] = {12, 4, 5}; *v = p[t]; return 0; }"),
    "libcublasLt.so.12": ("cublas/lib", "int x;"),
}


def _compile(source, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.with_name(path.name + ".c")
    src.write_text(source + "\n")
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{path.name}", "-o", str(path), str(src)], check=True)
    src.unlink()


@pytest.fixture()
def fake_cuda_node(archive, tmp_path):
    """A node with a CUDA 12.4 driver and a PyTorch-like python3 whose NVIDIA wheels hold both
    CUDA 13 (too new for this driver) and CUDA 12.4 libraries. All fakes: only the version
    queries run.sh makes are implemented."""
    toolkit_libs = [p for pattern in ("cuda*/lib64/lib*.so.*", "cuda*/targets/x86_64-linux/lib/lib*.so.*")
                    for p in pathlib.Path("/usr/local").glob(pattern)
                    if re.fullmatch(r"lib(nvrtc|cublas)\.so\.([0-9]|1[0-2])(\..*)?", p.name)]
    if toolkit_libs:  # run.sh searches a toolkit first; CUDA 13 ones would just be skipped
        pytest.skip(f"this machine's CUDA toolkit has {toolkit_libs[0]}, which run.sh would pick first")
    _compile("int cuDriverGetVersion(int *v) { *v = 12040; return 0; }", tmp_path / "driver" / "libcuda.so.1")
    nvidia = tmp_path / "site" / "nvidia"
    for name, (folder, source) in FAKE_LIBS.items():
        _compile(source, nvidia / folder / name)
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    (fakebin / "python3").write_text(f'#!/bin/sh\necho "{nvidia}"\n')  # answers run.sh's question
    (fakebin / "python3").chmod(0o755)
    dist = tmp_path / "dist"
    dist.mkdir()
    os.symlink(archive, dist / "xor_gpu-bundle.tar.gz")
    shutil.copy(RUN, dist / "xor_gpu-bundle-run.sh")
    (tmp_path / "tmp").mkdir()
    env = {"PATH": f"{fakebin}:/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path / "tmp"),
           "LD_LIBRARY_PATH": str(tmp_path / "driver")}
    return {"run": [str(dist / "xor_gpu-bundle-run.sh"), "--device", "cuda", "--setup-only"], "env": env,
            "nvidia": nvidia, "driver": tmp_path / "driver", "tmp": tmp_path}


def test_cuda_setup_picks_the_libraries_the_driver_supports(fake_cuda_node):
    node, out = fake_cuda_node, fake_cuda_node["tmp"] / "out"
    proc = subprocess.run(["bash", *node["run"], "--out", str(out)], env=node["env"], capture_output=True,
                          text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    nvidia = node["nvidia"]
    assert "driver supports CUDA 12.4" in log
    # nvidia/cu13/lib sorts first: its libraries are looked at and refused.
    assert f"{nvidia}/cu13/lib/libnvrtc.so.13 13.0 is newer than the driver (CUDA 12.4): skipped" in log
    assert f"{nvidia}/cu13/lib/libcublas.so.13 13.0.0 is newer than the driver (CUDA 12.4): skipped" in log
    assert f"NVRTC 12.4: {nvidia}/cuda_nvrtc/lib/libnvrtc.so.12" in log
    assert f"cuBLAS 12.4.5: {nvidia}/cublas/lib/libcublas.so.12" in log
    env = json.loads((out / "summary.json").read_text())["environment"]
    # One folder of links for the package (XOR_GPU_CUDA_LIBS): every 12.x library, no 13.x one.
    assert env["xor_gpu_cuda_libs"] == {
        name: str(nvidia / folder / name) for name, (folder, _) in FAKE_LIBS.items() if ".so.12" in name
    }
    assert env["ld_library_path"].endswith(f":{node['driver']}")  # the driver found via LD_LIBRARY_PATH


def test_cuda_setup_refuses_libraries_newer_than_the_driver(fake_cuda_node):
    """--cuda-libs is searched first; with no python3 on PATH nothing else is found here."""
    node, out = fake_cuda_node, fake_cuda_node["tmp"] / "out"
    env = {**node["env"], "PATH": "/usr/bin:/bin"}
    if shutil.which("python3", path=env["PATH"]) or shutil.which("python", path=env["PATH"]):
        env["PATH"] = f"{_no_python(node['tmp'])}:{env['PATH']}"
    proc = subprocess.run(["bash", *node["run"], "--out", str(out), "--cuda-libs", str(node["nvidia"] / "cu13" / "lib")],
                          env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 3, log
    assert f"folders searched for NVRTC/cuBLAS: {node['nvidia']}/cu13/lib" in log
    assert "is newer than the driver (CUDA 12.4): skipped" in log and "no usable NVRTC" in log


def _no_python(base):
    """A PATH folder whose python3/python find no NVIDIA wheels (Debian's /usr/bin/python3 might)."""
    folder = base / "nopython"
    folder.mkdir()
    for name in ("python3", "python"):
        (folder / name).write_text("#!/bin/sh\nexit 0\n")
        (folder / name).chmod(0o755)
    return folder


def test_cuda_libs_given_first_win_and_the_search_fills_in(fake_cuda_node):
    """NVRTC from a folder given with --cuda-libs, cuBLAS from the search (PyTorch's wheels)."""
    node, out = fake_cuda_node, fake_cuda_node["tmp"] / "out"
    given = node["tmp"] / "nvrtc12"
    given.mkdir()
    for name in ("libnvrtc.so.12", "libnvrtc-builtins.so.12.4"):
        shutil.copy(node["nvidia"] / "cuda_nvrtc" / "lib" / name, given / name)
    proc = subprocess.run(["bash", *node["run"], "--out", str(out), "--cuda-libs", str(given)],
                          env=node["env"], capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert f"NVRTC 12.4: {given}/libnvrtc.so.12" in log
    assert f"cuBLAS 12.4.5: {node['nvidia']}/cublas/lib/libcublas.so.12" in log
