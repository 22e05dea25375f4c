"""The offline GPU bundle (bundle/): built as the README says (its command, run as written in
a fresh clone), then run for real from an empty
folder on OpenCL (PoCL on the CPU) through `xor-gpu check`, with the host's Python hidden
and poisoned.

The build needs Debian bookworm's apt (no root: it keeps a package state of its own) and PyPI;
XOR_GPU_BUNDLE=path/to/xor_gpu-bundle.tar.gz uses a prebuilt archive instead. The dry run
needs g++ and an OpenCL ICD for platform 0 (pocl-opencl-icd), as the opencl env does.
"""
import calendar
import hashlib
import importlib.util
import json
import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time

import pytest

from bundlelib import BUILD, RUN, prebuilt, runner_beside, setup_py_pins, tail
from xorlib import PLANTED, common_folder
from docblocks import block, explain, repo_copy, run_block
from xor_gpu.launch import STATE_FOLDERS

pytestmark = pytest.mark.bundle

REPO = pathlib.Path(__file__).resolve().parents[2]
MAX_BYTES = 62 * 2**20  # a size a cluster's home quota and a copy to each node handle easily
# The launcher finds a Python, checks what it would run (the bundle's and g++'s architecture
# too, which must come before the bundle's Python can run), and execs: the logic lives in
# xor_gpu/launch.py.
MAX_LAUNCHER_LINES = 100
DEVICE = "opencl0:0"
STEPS = 40000  # converges (the seed config's loss passes 0.25 near step 30,000)
LEFT_OUT = {"scipy", "fonttools"}  # imported only optionally (Theano), or for PDF and PS (matplotlib): bundle/build.py
HIDDEN_TOOLS = ("python", "python3", "python3.11", "pip", "pip3")
BUILD_BLOCK = block("bundle", "python3 bundle/build.py")  # the README's build command
TEST_BLOCK = block("bundle", "bash dist/xor_gpu-bundle-run.sh test")  # the README's device tests from the bundle
DEVICE_TESTS = ("conftest.py", "xorlib.py", "test_device.py", "test_backend.py", "test_cuda_libs.py",
                "test_train_report.py")


def _load_build():
    spec = importlib.util.spec_from_file_location("bundle_build", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- the launcher's own arguments (no archive needed) ------------------------------------

def test_launcher_is_short_and_has_no_product_logic():
    """run.sh finds the bundle's Python, checks that no other user could have changed it, and
    execs; the environment and the default command are xor_gpu/launch.py's (tests/test_launch.py)."""
    lines = RUN.read_text().splitlines()
    assert len(lines) <= MAX_LAUNCHER_LINES and max(map(len, lines)) <= 100
    for logic in ("THEANO_FLAGS", "LD_LIBRARY_PATH", "env -i", "=~", "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED"):
        assert logic not in RUN.read_text(), logic


def _run_launcher(script, args, tmp_path, path="/usr/bin:/bin"):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    for d in (home, cwd):
        d.mkdir(exist_ok=True)
    proc = subprocess.run(["/bin/bash", str(script), *args], env={"PATH": path, "HOME": str(home)}, cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    assert list(home.iterdir()) == [] and list(cwd.iterdir()) == [], "the launcher created files"
    return proc


@pytest.mark.parametrize("args, message", [
    (["--bundle"], "--bundle needs a value"),
    (["--bundle", "/no/such/xor_gpu-bundle.tar.gz", "doctor"], "--bundle: no such file"),
    (["--cache"], "--cache needs a value"),
    (["--cuda-libs", "/no/such/folder"], "--cuda-libs: no such folder"),
    (["--device", DEVICE], "no bundle:"),  # no archive beside the script, none given
])
def test_launcher_refuses_bad_arguments_with_one_line(args, message, tmp_path):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(RUN, lonely / "run.sh")
    proc = _run_launcher(lonely / "run.sh", args, tmp_path)
    assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1 and message in proc.stderr, proc.stderr


def test_launcher_says_when_g_plus_plus_is_missing(tmp_path):
    """Theano compiles every op with g++: without it the launcher stops before unpacking."""
    dist, bin_dir = tmp_path / "dist", tmp_path / "bin"
    dist.mkdir()
    bin_dir.mkdir()
    shutil.copy(RUN, dist / "xor_gpu-bundle-run.sh")
    (dist / "xor_gpu-bundle.tar.gz").write_bytes(b"not unpacked")
    for tool in ("dirname", "uname"):  # the only tools on PATH
        os.symlink(shutil.which(tool), bin_dir / tool)
    proc = _run_launcher(dist / "xor_gpu-bundle-run.sh", [], tmp_path, path=str(bin_dir))
    assert proc.returncode == 3, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "g++ not found on PATH" in proc.stderr, proc.stderr


def test_build_refuses_bad_options_with_one_line(tmp_path):
    for args, message in ((["--frobnicate"], "unrecognized arguments"),
                          (["--out", str(tmp_path / "bundle.zip")], "--out must name a .tar.gz file"),
                          (["--arch", "i386"], "argument --arch: invalid choice: 'i386'")):
        proc = subprocess.run([sys.executable, str(BUILD), *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


# --- the archive ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def documented_build(tmp_path_factory):
    """The README's build command, as written, in a fresh clone: its dist/ is the archive the
    tests below examine and dry-run."""
    tree = repo_copy(tmp_path_factory.mktemp("clone"))
    return tree, run_block(BUILD_BLOCK, tree, timeout=1800)


@pytest.mark.parametrize("doc", [BUILD_BLOCK], ids=str)
def test_documented_build_runs_as_written(doc, documented_build):
    tree, proc = documented_build
    assert proc.returncode == 0, explain(doc, proc)
    names = sorted(p.name for p in (tree / "dist").iterdir())
    assert names == ["xor_gpu-bundle-run.sh", "xor_gpu-bundle.tar.gz", "xor_gpu-bundle.tar.gz.sha256"], names


@pytest.fixture(scope="session")
def archive(request):
    path = prebuilt()
    if path:
        return path
    tree, proc = request.getfixturevalue("documented_build")
    assert proc.returncode == 0, explain(BUILD_BLOCK, proc)
    return tree / "dist" / "xor_gpu-bundle.tar.gz"


@pytest.fixture(scope="session")
def members(archive):
    with tarfile.open(archive) as tar:
        return tar.getmembers()


@pytest.fixture(scope="session")
def manifest(archive):
    with tarfile.open(archive) as tar:
        return json.load(tar.extractfile("xor_gpu-bundle/MANIFEST.json"))


def test_archive_is_one_small_self_contained_tree(archive, members):
    size = archive.stat().st_size
    assert 0 < size <= MAX_BYTES, f"{size / 2**20:.1f} MiB"
    names = {m.name for m in members}
    for m in members:
        assert m.name == "xor_gpu-bundle" or m.name.startswith("xor_gpu-bundle/"), m.name
        assert ".." not in m.name.split("/"), m.name
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", ""), m.name
        if m.issym() or m.islnk():  # links stay inside the bundle
            base = os.path.dirname(m.name) if m.issym() else ""
            target = os.path.normpath(os.path.join(base, m.linkname))
            assert not m.linkname.startswith("/") and target.startswith("xor_gpu-bundle/"), (m.name, m.linkname)
    site = "root/usr/lib/python3/dist-packages"
    for required in ("run.sh", "MANIFEST.json", "root/usr/bin/python3.11", "root/usr/include/python3.11/Python.h",
                     "root/usr/include/x86_64-linux-gnu/python3.11/pyconfig.h", "root/usr/lib/libgpuarray.so",
                     "root/usr/lib/x86_64-linux-gnu/libclblast.so", f"{site}/pygpu/__init__.py",
                     f"{site}/xor_gpu/check.py", f"{site}/xor_gpu/reference/seed-cpu-float32.json",
                     f"{site}/pytest/__init__.py", "tests/pyproject.toml", *(f"tests/{t}" for t in DEVICE_TESTS)):
        assert f"xor_gpu-bundle/{required}" in names, required
    # The device tests only (`run.sh test`): none that reads the documents or needs Docker or Slurm.
    shipped = {n.split("/")[-1] for n in names if n.startswith("xor_gpu-bundle/tests/")}
    assert not shipped & {"docblocks.py", "test_docs.py", "bundlelib.py", "test_check.py"}, shipped


def test_manifest_holds_the_checksum_of_every_file(archive, members, manifest):
    """What run.sh checks the unpacked tree against: every file but the manifest itself, a link
    by the file it leads to."""
    top = "xor_gpu-bundle/"
    kept = {m.name[len(top):]: m for m in members if not m.isdir() and m.name != top + "MANIFEST.json"}
    assert set(manifest["files"]) == set(kept)
    with tarfile.open(archive) as tar:
        for name, member in kept.items():
            if member.issym():
                target = os.path.normpath(os.path.join(os.path.dirname(name), member.linkname))
                assert manifest["files"][name] == manifest["files"][target], name
            else:
                assert manifest["files"][name] == hashlib.sha256(tar.extractfile(member).read()).hexdigest(), name


def test_archive_carries_exactly_the_pins_of_setup_py(manifest):
    """The wheels are setup.py's pins for xor_gpu[gpu,plot], less what is left out; NVIDIA's
    libraries (the cuda extra) come from the node."""
    assert manifest["extras"] == ["gpu", "plot"] and set(manifest["left_out"]) == LEFT_OUT
    assert (manifest["architecture"], manifest["machine"]) == ("amd64", "x86_64")  # build.py's default
    wheels = {re.sub(r"[-_.]+", "_", w.split("-")[0]).lower(): w.split("-")[1] for w in manifest["wheels"]}
    pins = setup_py_pins(manifest["extras"])
    for name, version in pins.items():
        if name in LEFT_OUT:
            assert name not in wheels
        else:
            assert wheels.get(name) == version, (name, version, wheels.get(name))
    # pytest for `run.sh test`, at setup.py's pin of the test extra; not the extractor of the documents.
    assert wheels["pytest"] == setup_py_pins(["test"])["pytest"] and "sybil" not in wheels
    assert {"python3.11-minimal", "libpython3.11-dev", "python3-pygpu", "libgpuarray3"} <= set(manifest["debian_packages"])


def test_archive_is_reproducible(archive, manifest, tmp_path):
    """Unpacked with other times and permissions, the tree archives to the same bytes again."""
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(tmp_path)], check=True)
    now = time.time()
    for path in (tmp_path / "xor_gpu-bundle").rglob("*"):
        if not path.is_symlink():
            os.utime(path, (now, now))
            path.chmod(path.stat().st_mode | 0o020)  # a group-writable umask
    epoch = calendar.timegm(time.strptime(manifest["built"], "%Y-%m-%dT%H:%M:%SZ"))
    again = tmp_path / "again.tar.gz"
    _load_build().write_archive(tmp_path, again, epoch)
    assert hashlib.sha256(again.read_bytes()).hexdigest() == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_build_leaves_the_runner_and_checksum_beside_the_archive(archive):
    if os.environ.get("XOR_GPU_BUNDLE"):
        pytest.skip("a prebuilt archive was given (XOR_GPU_BUNDLE); the build's outputs are checked when it is built")
    runner = archive.with_name("xor_gpu-bundle-run.sh")
    assert runner.read_bytes() == RUN.read_bytes() and os.access(runner, os.X_OK)
    digest, name = archive.with_name("xor_gpu-bundle.tar.gz.sha256").read_text().split()
    assert name == archive.name and digest == hashlib.sha256(archive.read_bytes()).hexdigest()


# --- the dry run: the runner beside the archive, from an empty folder ----------------------

def _hidden_host_python(base):
    """An environment whose python/pip on PATH, PYTHONPATH, PYTHONHOME, user site and
    THEANO_FLAGS would all break or be recorded if the launcher let any of them through."""
    marker = base / "host-python-used"
    shims = base / "shims"
    shims.mkdir()
    for name in HIDDEN_TOOLS:
        shim = shims / name
        shim.write_text(f'#!/bin/sh\ncase "$2" in *nvidia*) q=nvidia ;; *) q=other ;; esac\n'
                        f'echo "{name} $1 $q" >> "{marker}"\nexit 97\n')
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
    for d in ("home", "tmp", "work"):
        (base / d).mkdir()
    return env, marker


@pytest.fixture(scope="session")
def dry_run(archive, tmp_path_factory):
    """dist/ as a user copies it (archive + runner), run from an empty folder: `xor-gpu check`
    on OpenCL, then a second command that must find the bundle already unpacked."""
    base = tmp_path_factory.mktemp("bundle-dry-run")
    dist = base / "dist"
    dist.mkdir()
    shutil.copy(archive, dist / "xor_gpu-bundle.tar.gz")
    shutil.copy(runner_beside(archive), dist / "xor_gpu-bundle-run.sh")
    env, marker = _hidden_host_python(base)
    runner = ["bash", str(dist / "xor_gpu-bundle-run.sh")]
    out = base / "work" / "out"
    started = time.monotonic()
    check = subprocess.run([*runner, "--device", DEVICE, "--out", str(out), "--steps", str(STEPS)],
                           env=env, cwd=base / "work", capture_output=True, text=True, timeout=1500)
    seconds = time.monotonic() - started
    state = base / "home" / ".cache" / "xor_gpu" / "bundle" / hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    unpacked = state / "xor_gpu-bundle"
    first = unpacked.stat() if unpacked.exists() else None
    # As a Slurm array task would run it: its identity and thread counts reach the run.
    again = subprocess.run([*runner, "train", "--device", DEVICE, "--steps", "2000", "--json", str(base / "again.json")],
                           env={**env, **SLURM_TASK}, cwd=base / "work", capture_output=True, text=True, timeout=600)
    print(f"dry run: xor-gpu check took {seconds:.0f} s (cold caches, unpacking included)")
    return {"check": check, "again": again, "out": out, "state": state, "unpacked": unpacked, "first_stat": first,
            "marker": marker, "env": env, "runner": runner, "base": base}


SLURM_TASK = {"SLURM_JOB_ID": "4243", "SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": "1",
              "SLURM_CPUS_PER_TASK": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _json(path):
    return json.loads(path.read_text())


def test_dry_run_check_passes(dry_run):
    proc = dry_run["check"]
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{tail(proc.stdout + proc.stderr)}"
    summary = _json(dry_run["out"] / "summary.json")
    assert summary["schema"] == "xor_gpu.check/1" and summary["passed"] is True
    assert summary["device"]["requested"] == summary["device"]["active"] == DEVICE
    assert summary["config"]["steps"] == STEPS
    assert all(step["status"] in ("passed", "skipped") for step in summary["steps"]), summary["steps"]
    assert {s["name"] for s in summary["steps"] if s["status"] == "passed"} >= {"train", "determinism", "parity"}
    runs = [run for run in summary["runs"].values() if run["device"]["requested"] != "cpu"]
    assert runs and all(run["device"]["active"] == DEVICE for run in runs), summary["runs"]
    assert any(op.startswith(("GpuDot22", "GpuGemm")) for op in runs[0]["ops"]), runs[0]["ops"]
    assert all(run["floatX"] == "float32" for run in summary["runs"].values())  # not the caller's THEANO_FLAGS


def test_dry_run_uses_only_the_bundles_python(dry_run):
    """The host's PYTHONPATH/PYTHONHOME/THEANO_FLAGS never reached the bundle, every module came
    from the unpacked bundle, and a python3 on PATH was at most asked where NVIDIA's wheels are."""
    calls = dry_run["marker"].read_text().splitlines() if dry_run["marker"].exists() else []
    assert all(call == "python3 -c nvidia" for call in calls), calls
    root = dry_run["unpacked"] / "root"
    doctor = _json(dry_run["out"] / "doctor.json")
    assert doctor["python"].endswith(f"({root}/usr/bin/python3.11)"), doctor["python"]
    assert doctor["compiledir"].startswith(str(dry_run["state"])), doctor["compiledir"]
    assert doctor["manifest"]["path"] == str(dry_run["unpacked"] / "MANIFEST.json")
    package = _json(dry_run["out"] / "summary.json")["origin"]["package"]
    assert package["kind"] == "bundle", package


def test_repeat_runs_reuse_the_unpacked_bundle(dry_run, archive, members):
    again = dry_run["again"]
    assert dry_run["check"].stderr.count("run.sh: unpacking") == 1, tail(dry_run["check"].stderr)
    assert again.returncode == 0, tail(again.stdout + again.stderr)
    assert "run.sh: unpacking" not in again.stderr
    now = dry_run["unpacked"].stat()
    assert (now.st_ino, now.st_mtime_ns) == (dry_run["first_stat"].st_ino, dry_run["first_stat"].st_mtime_ns)
    # One folder per archive, holding the bundle and its caches, no half-unpacked leftovers;
    # the bundle exactly as archived (no bytecode or caches written into it).
    assert sorted(p.name for p in dry_run["state"].parent.iterdir()) == [dry_run["state"].name]
    assert sorted(p.name for p in dry_run["state"].iterdir()) == sorted([*STATE_FOLDERS, "xor_gpu-bundle"])
    # Every folder the runs made is private: the cache folders above the state folder too.
    made = [dry_run["base"] / "home" / f for f in (".cache", ".cache/xor_gpu", ".cache/xor_gpu/bundle")]
    made += [dry_run["state"], *(dry_run["state"] / f for f in STATE_FOLDERS)]
    assert {stat.S_IMODE(f.stat().st_mode) for f in made} == {0o700}
    assert ["xor_gpu-bundle/" + p for p in _tree(dry_run["unpacked"])] == sorted(m.name for m in members)[1:]
    # Everything the runs wrote is in that folder: nothing else in HOME.
    assert _tree(dry_run["base"] / "home") == [".cache", ".cache/xor_gpu", ".cache/xor_gpu/bundle",
                                               *(f".cache/xor_gpu/bundle/{p}" for p in _tree(dry_run["state"].parent))]
    report = _json(dry_run["base"] / "again.json")
    assert report["device"]["active"] == DEVICE and report["config"]["steps"] == 2000
    # A Slurm task's identity reached the run, which names it.
    assert report["origin"]["job"] == {"scheduler": "slurm", "job_id": "4243", "array_job_id": "4242",
                                       "array_task_id": "1", "cpus_per_task": "1"}


def test_default_command_is_check_on_cuda(dry_run, tmp_path):
    """No COMMAND, no --device: `xor-gpu check --device cuda`; without an NVIDIA driver that is
    exit 3 with the reason, not a silent fallback to the CPU."""
    if subprocess.run(["sh", "-c", "ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1 '"]).returncode == 0:
        pytest.skip("this machine has an NVIDIA driver: the missing-driver path cannot be shown here")
    out = tmp_path / "out"
    proc = subprocess.run([*dry_run["runner"], "--out", str(out)], env=dry_run["env"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, tail(proc.stdout + proc.stderr)
    assert proc.stderr.splitlines()[-1].startswith("xor-gpu: error: device cuda is not usable"), tail(proc.stderr)
    summary = _json(out / "summary.json")
    assert summary["device"]["requested"] == "cuda" and summary["passed"] is False
    assert "run.sh: unpacking" not in proc.stderr


def test_launcher_runs_in_place_inside_an_unpacked_bundle(dry_run, tmp_path):
    """bash xor_gpu-bundle/run.sh: no archive, the bundle beside the script is used as it is."""
    bundle = dry_run["unpacked"]
    before = _tree(bundle)
    cache = tmp_path / "cache"
    proc = subprocess.run(["bash", str(bundle / "run.sh"), "--cache", str(cache), "doctor", "--json",
                           str(tmp_path / "doctor.json")], env=dry_run["env"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, tail(proc.stdout + proc.stderr)
    assert "run.sh: unpacking" not in proc.stderr
    doctor = _json(tmp_path / "doctor.json")
    assert doctor["python"].endswith(f"({bundle}/root/usr/bin/python3.11)")
    assert doctor["compiledir"].startswith(str(cache) + "/")
    assert _tree(bundle) == before


def test_launcher_passes_cuda_folders_and_the_callers_library_path_on(dry_run, tmp_path):
    """--cuda-libs folders (in order) become XOR_GPU_CUDA_LIBS, searched first; the caller's
    LD_LIBRARY_PATH (a driver found only through it) comes after the bundle's own folders."""
    given = [tmp_path / "nvrtc", tmp_path / "cublas"]
    for d in given:
        d.mkdir()
    env = {**dry_run["env"], "LD_LIBRARY_PATH": str(tmp_path / "driver")}
    proc = subprocess.run([*dry_run["runner"], "--cuda-libs", str(given[0]), "--cuda-libs", str(given[1]), "doctor",
                           "--json", str(tmp_path / "doctor.json")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, tail(proc.stdout + proc.stderr)
    doctor = _json(tmp_path / "doctor.json")
    assert doctor["cuda_libs"]["searched"][:2] == [str(d) for d in given], doctor["cuda_libs"]
    root = dry_run["unpacked"] / "root"
    # (xor-gpu itself may put its folder of NVIDIA links first, on a machine that has them.)
    assert doctor["ld_library_path"].endswith(f"{root}/usr/lib/x86_64-linux-gnu:{root}/usr/lib:{tmp_path / 'driver'}")


def test_a_login_node_compiles_every_cuda_kernel_from_the_bundle(archive, tmp_path):
    """A login node before a job is submitted: no GPU, the NVRTC and cuBLAS the job will load
    given by --cuda-libs (here the cuda extra's wheels of this env, as a toolkit's lib64 would
    be), ptxas found beside that NVRTC; the host's Python stays hidden."""
    nvidia = pathlib.Path(importlib.util.find_spec("nvidia").submodule_search_locations[0])
    env, marker = _hidden_host_python(tmp_path)
    out = tmp_path / "compile-only.json"
    libs = ["--cuda-libs", str(nvidia / "cuda_nvrtc" / "lib"), "--cuda-libs", str(nvidia / "cublas" / "lib")]
    proc = subprocess.run(["bash", str(RUN), "--bundle", str(archive), *libs, "doctor", "--device", "cuda",
                           "--compile-only", "--arch", "sm_80", "--json", str(out)],
                          env=env, cwd=tmp_path / "work", capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, tail(proc.stdout + proc.stderr)
    data = _json(out)
    assert data["executed"] is False and data["libgpuarray_arch"] == "compute_80"
    assert data["nvrtc"]["path"].startswith(str(nvidia)) and data["ptxas"]["path"].startswith(str(nvidia))
    assert len(data["kernels"]) > 20 and all(k["target"] == "sm_80" and k["registers"] > 0 for k in data["kernels"])
    assert not marker.exists(), marker.read_text()
    # Whatever the run made (the CUDA stand-in, its compile caches) is under the bundle's own
    # folder, nothing else in HOME.
    (state,) = (tmp_path / "home" / ".cache" / "xor_gpu" / "bundle").iterdir()
    assert _tree(tmp_path / "home") == [".cache", ".cache/xor_gpu", ".cache/xor_gpu/bundle", *(
        f".cache/xor_gpu/bundle/{p}" for p in [state.name, *(f"{state.name}/{q}" for q in _tree(state))])]
    assert (state / "cache" / "xor_gpu" / "cuda-standin").is_dir()


# --- the device tests from the bundle: `run.sh test --device DEV` -------------------------

@pytest.fixture(scope="session")
def dist_only(archive, tmp_path_factory):
    """A folder holding only dist/ (the archive and its runner), and an empty HOME."""
    base = tmp_path_factory.mktemp("bundle-test")
    (base / "dist").mkdir()
    (base / "home").mkdir()
    shutil.copy(archive, base / "dist" / "xor_gpu-bundle.tar.gz")
    shutil.copy(runner_beside(archive), base / "dist" / "xor_gpu-bundle-run.sh")
    # The checksum beside it (as build.py writes it): checked before the archive is unpacked.
    (base / "dist" / "xor_gpu-bundle.tar.gz.sha256").write_text(f"{_sha256(archive)}  xor_gpu-bundle.tar.gz\n")
    return base


@pytest.mark.parametrize("doc", [TEST_BLOCK], ids=str)
def test_the_device_tests_pass_from_the_bundle_on_opencl(doc, dist_only):
    """The README's command as written: the package's device tests with the bundle's own pytest,
    on PoCL, with XOR_GPU_REQUIRE_GPU=1 (a device that does not work fails, never skips)."""
    proc = run_block(doc, dist_only, env={"HOME": str(dist_only / "home")})
    assert proc.returncode == 0, explain(doc, proc)
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.search(r"\b\d+ passed\b", summary) and "failed" not in summary and "error" not in summary, summary


def test_the_device_tests_refuse_a_cuda_device_without_a_gpu(dist_only):
    if subprocess.run(["sh", "-c", "ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1 '"]).returncode == 0:
        pytest.skip("this machine has an NVIDIA driver: the missing-driver path cannot be shown here")
    proc = subprocess.run(["bash", "dist/xor_gpu-bundle-run.sh", "test", "--device", "cuda"], cwd=dist_only,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(dist_only / "home")},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, tail(proc.stdout + proc.stderr)
    assert proc.stderr.strip().splitlines()[-1] == (
        "xor-gpu test: error: device cuda is not usable here: no NVIDIA driver (libcuda.so.1 does not load)")
    assert "passed" not in proc.stdout  # no test ran, none skipped


# --- what the launcher trusts: folders of the user's own, and the archive's files ----------

def _sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _plant_interpreter(nobody, state, marker):
    """As another user would: STATE/xor_gpu-bundle/root/usr/bin/python3.11, a script that says
    it ran, and as whom."""
    script = marker.with_name("planted.sh")
    script.write_text(f"#!/bin/sh\necho {PLANTED} running as $(id -un) | tee -a {marker}\n")
    script.chmod(0o755)
    python = state / "xor_gpu-bundle" / "root" / "usr" / "bin" / "python3.11"
    nobody.run("sh", "-c", f'umask 0 && mkdir -p "{python.parent}" && cp "{script}" "{python}"')


def _reproduction(common, nobody, key, marker):
    """The issue's: another user's world-writable folder holding KEY/xor_gpu-bundle/... ."""
    folder = common / "theirs"
    nobody.run("sh", "-c", f'umask 0 && mkdir -m 0777 "{folder}" && mkdir "{folder / key}"')
    _plant_interpreter(nobody, folder / key, marker)
    return folder, f"cache folder {folder / key} is not yours (owner nobody, mode 0777): {FIX}, or remove {folder / key}"


def _their_sticky_folder(common, nobody, key, marker):
    nobody.mkdir(common / "theirs", 0o1777)
    return common / "theirs", (f"cache folder {common / 'theirs' / key} lies in {common / 'theirs'}, which other "
                               f"users can change (owner nobody, mode 1777): {FIX}")


def _own_world_writable(common, nobody, key, marker):
    (common / "mine" / key).mkdir(parents=True)
    (common / "mine" / key).chmod(0o777)
    _plant_interpreter(nobody, common / "mine" / key, marker)
    return common / "mine", (f"cache folder {common / 'mine' / key} can be changed by other users (owner root, "
                             f"mode 0777): {FIX}, or remove {common / 'mine' / key}")


def _in_a_group_writable_folder(common, nobody, key, marker):
    (common / "group").mkdir()
    (common / "group").chmod(0o2775)  # a project's folder
    return common / "group", (f"cache folder {common / 'group' / key} lies in {common / 'group'}, which other "
                              f"users can change (owner root, mode 2775): {FIX}")


FIX = "use --cache on a folder of your own"
PLANTS = {"the issue's reproduction": _reproduction, "in another user's sticky folder": _their_sticky_folder,
          "own, writable by all": _own_world_writable, "in a group-writable folder": _in_a_group_writable_folder}


@pytest.mark.parametrize("plant", PLANTS.values(), ids=PLANTS.keys())
def test_a_cache_other_users_can_change_is_refused_and_nothing_planted_runs(plant, archive, common, nobody):
    """Root runs the launcher with --cache on a folder another user owns or can change (a shared
    /tmp, a project's group folder): one line, exit 3, before anything there is executed."""
    marker = common / "planted-ran"
    cache, message = plant(common, nobody, _sha256(archive)[:16], marker)
    proc = subprocess.run(["bash", str(runner_beside(archive)), "--bundle", str(archive), "--cache", str(cache),
                           "train", "--device", "cpu", "--steps", "10"], cwd=common, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(common / "home")}, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "", f"run.sh: error: {message}\n")
    assert not marker.exists() and PLANTED not in proc.stdout + proc.stderr
    assert not (common / "home").exists()


@pytest.fixture(scope="module")
def own_cache(archive):
    """The bundle unpacked by the launcher into a cache of root's own inside a folder like /tmp
    (root's, mode 1777): such a cache is used."""
    common = pathlib.Path(common_folder())
    try:
        proc = subprocess.run(["bash", str(runner_beside(archive)), "--bundle", str(archive), "--cache",
                               str(common / "cache"), "check", "--help"], capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(common)}, timeout=600)
        assert proc.returncode == 0 and "usage: xor-gpu check" in proc.stdout, tail(proc.stdout + proc.stderr)
        yield common / "cache" / _sha256(archive)[:16]
    finally:
        shutil.rmtree(common)


def _forged_python(bundle, marker):
    """python3.11 replaced by a script; returns its sha256 (what a forger puts in the manifest)."""
    python = bundle / "root" / "usr" / "bin" / "python3.11"
    python.unlink()
    python.write_text(f"#!/bin/sh\necho {PLANTED} | tee -a {marker}\n")
    python.chmod(0o755)
    return _sha256(python)


def _manifest_too(bundle, forged):
    manifest = bundle / "MANIFEST.json"
    data = json.loads(manifest.read_text())
    data["files"]["root/usr/bin/python3.11"] = forged
    manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@pytest.mark.parametrize("forge", ["python3.11", "python3.11 and MANIFEST.json"])
def test_an_unpacked_tree_that_is_not_the_archives_is_refused(forge, own_cache, archive, tmp_path):
    """The manifest must be the archive's and the interpreter the manifest's, on every run (in
    place too): a changed interpreter never runs."""
    bundle = own_cache / "xor_gpu-bundle"
    saved = tmp_path / "saved"
    saved.mkdir()
    for name in ("MANIFEST.json", "root/usr/bin/python3.11"):
        shutil.copy2(bundle / name, saved / os.path.basename(name))
    marker = tmp_path / "planted-ran"
    try:
        forged = _forged_python(bundle, marker)
        if forge != "python3.11":
            _manifest_too(bundle, forged)
        runs = {"from the archive": ["bash", str(runner_beside(archive)), "--bundle", str(archive)]}
        if forge == "python3.11":  # in place there is no archive: the interpreter is checked against the manifest
            runs["in place"] = ["bash", str(bundle / "run.sh")]
        for how, runner in runs.items():
            proc = subprocess.run([*runner, "--cache", str(own_cache.parent), "check", "--help"], capture_output=True,
                                  text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=120)
            assert (proc.returncode, proc.stdout) == (3, ""), (how, proc.stdout, proc.stderr)
            assert proc.stderr == (f"run.sh: error: {bundle} differs from its archive (MANIFEST.json, python3.11): "
                                   "remove it, unpack anew\n"), how
        assert not marker.exists()
    finally:
        shutil.copy2(saved / "MANIFEST.json", bundle / "MANIFEST.json")
        (bundle / "root/usr/bin/python3.11").unlink()
        shutil.copy2(saved / "python3.11", bundle / "root/usr/bin/python3.11")


def test_an_archive_that_does_not_match_its_checksum_file_is_not_unpacked(archive, tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    shutil.copy(archive, dist / "xor_gpu-bundle.tar.gz")
    shutil.copy(runner_beside(archive), dist / "xor_gpu-bundle-run.sh")
    (dist / "xor_gpu-bundle.tar.gz.sha256").write_text(f"{'0' * 64}  xor_gpu-bundle.tar.gz\n")
    proc = subprocess.run(["bash", str(dist / "xor_gpu-bundle-run.sh"), "--cache", str(tmp_path / "cache"), "doctor"],
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, capture_output=True, text=True,
                          timeout=120)
    archive_path = dist / "xor_gpu-bundle.tar.gz"
    assert (proc.returncode, proc.stdout) == (3, "")
    assert proc.stderr == f"run.sh: error: {archive_path} does not match {archive_path}.sha256: copy both again\n"
    assert not (tmp_path / "cache").exists()


def _repacked(archive, tmp_path, change):
    """The archive unpacked, changed (its MANIFEST.json kept), and packed again."""
    tree = tmp_path / "tree"
    tree.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(tree)], check=True)
    change(tree / "xor_gpu-bundle")
    out = tmp_path / "repacked" / "xor_gpu-bundle.tar.gz"
    out.parent.mkdir()
    subprocess.run(f'tar -C "{tree}" -c xor_gpu-bundle | gzip -1 > "{out}"', shell=True, check=True)
    shutil.rmtree(tree)
    return out


def _change_a_file(bundle):
    with open(bundle / "root/usr/lib/python3.11/os.py", "a", encoding="utf-8") as f:
        f.write(f"\nprint('{PLANTED}')\n")


def _add_a_file(bundle):
    (bundle / "root/usr/lib/python3.11/sitecustomize.py").write_text(f"print('{PLANTED}')\n")


CHANGES = {"a changed file": _change_a_file, "an added file": _add_a_file}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_an_archive_whose_files_differ_from_its_manifest_is_not_used(change, archive, tmp_path):
    """Checked once, when unpacked: nothing is left in the cache but the empty state folder."""
    repacked = _repacked(archive, tmp_path, change)
    cache = tmp_path / "cache"
    proc = subprocess.run(["bash", str(runner_beside(archive)), "--bundle", str(repacked), "--cache", str(cache),
                           "check", "--help"], env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, capture_output=True,
                          text=True, timeout=600)
    assert (proc.returncode, proc.stdout) == (3, "") and PLANTED not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (f"run.sh: error: {repacked} holds other files than its MANIFEST.json "
                                            "lists (build it with build.py)")
    assert [p.relative_to(cache) for p in cache.rglob("*")] == [pathlib.Path(_sha256(repacked)[:16])]
