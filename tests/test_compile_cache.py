"""A damaged Theano compile cache is repaired, not reported: real `xor-gpu train` processes on
a copy of a warm cache with one module damaged as a full disk or a bad volume leaves it
(truncated, garbage, empty; lazylinker_ext too; a whole ELF file that fails to load). Each
run exits 0, says what it rebuilt in one warning line, leaves a whole module, and predicts
what an undamaged run predicts. A run killed while compiling needs no repair; what cannot
be repaired ends with exit 1 and one line; the lock other processes compile under is kept.
"""
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from xor_gpu import compile_cache
from xor_gpu.compile_cache import elf_damage
from xor_gpu.private_folder import UnsafeFolder
from xorlib import DEVICE, PLANTED, one_line_error, planted_library, run_cli

STEPS = "5"


def train(cache, out, *, preexec_fn=None):
    """`python -m xor_gpu train` on the compile cache `cache`: (process, report or None)."""
    report = out / "report.json"
    proc = subprocess.run([sys.executable, "-m", "xor_gpu", "train", "--device", DEVICE, "--steps", STEPS,
                           "--json", str(report)], capture_output=True, text=True, preexec_fn=preexec_fn,
                          env={**os.environ, "XOR_GPU_COMPILEDIR": str(cache)})
    if not report.exists():
        return proc, None
    with open(report, encoding="utf-8") as f:
        return proc, json.load(f)


@pytest.fixture(scope="module")
def warm(tmp_path_factory, device):
    """A compile cache filled by one run, and that run's predictions."""
    out = tmp_path_factory.mktemp("warm")
    proc, report = train(out / "compiledir", out)
    assert proc.returncode == 0, proc.stderr
    return out / "compiledir", report["predictions"]


@pytest.fixture
def cache(warm, tmp_path):
    copy = tmp_path / "compiledir"
    shutil.copytree(warm[0], copy, symlinks=True)
    return copy


def a_module(cache):
    """The .so of the first compiled module (every one is loaded by a run)."""
    folder = min(p for p in cache.glob("tmp*") if (p / "key.pkl").exists())
    (so,) = folder.glob("*.so")
    return so


def whole_modules_named(cache, name):
    return [p for p in cache.glob(f"*/{name}") if elf_damage(p) is None]


def assert_repaired(proc, report, warm, so, reason):
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"xor-gpu: warning: compile cache module {so} was damaged ({reason}); rebuilding it"]
    assert whole_modules_named(so.parents[1], so.name), f"{so.name} was not rebuilt"
    assert report["predictions"] == warm[1]


def truncate(path):
    size = path.stat().st_size
    os.truncate(path, size // 3)
    return f"truncated: {size // 3} of {size} bytes"


def garbage(path):
    path.write_bytes(os.urandom(path.stat().st_size))
    return "not an ELF file"


def empty(path):
    path.write_bytes(b"")
    return "empty file"


@pytest.mark.parametrize("damage", [truncate, garbage, empty])
def test_damaged_module_is_rebuilt(cache, warm, tmp_path, damage):
    so = a_module(cache)
    reason = damage(so)
    proc, report = train(cache, tmp_path)
    assert_repaired(proc, report, warm, so, reason)
    assert not so.parent.exists()


@pytest.mark.parametrize("damage", [truncate, garbage])
def test_damaged_lazylinker_is_rebuilt(cache, warm, tmp_path, damage):
    # Theano itself would silently drop its C VM and fail later: name 'CVM' is not defined.
    so = cache / "lazylinker_ext" / "lazylinker_ext.so"
    reason = damage(so)
    proc, report = train(cache, tmp_path)
    assert_repaired(proc, report, warm, so, reason)


def test_module_that_fails_to_load_is_rebuilt(cache, warm, tmp_path):
    # A whole ELF file that is not this module: the check before import cannot see it, the
    # import fails, and the compilation is retried once without it.
    so = a_module(cache)
    shutil.copyfile(cache / "cutils_ext" / "cutils_ext.so", so)
    proc, report = train(cache, tmp_path)
    reason = f"fails to load: dynamic module does not define module export function (PyInit_{so.stem})"
    assert_repaired(proc, report, warm, so, reason)


def test_run_killed_mid_compile_is_followed_by_a_normal_run(cache, warm, tmp_path):
    so = a_module(cache)
    shutil.rmtree(so.parent)  # the next run compiles this module
    before = set(cache.iterdir())
    child = subprocess.Popen([sys.executable, "-m", "xor_gpu", "train", "--device", DEVICE, "--steps", STEPS],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                             env={**os.environ, "XOR_GPU_COMPILEDIR": str(cache)})
    try:
        compiling = _wait_for(lambda: [p for p in set(cache.iterdir()) - before if (p / "mod.cpp").exists()])
        assert compiling and child.poll() is None, "the run did not start compiling in 120 s"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # the run and its compiler
        child.wait()
    assert not (compiling[0] / "key.pkl").exists(), "the compilation finished before the kill"

    proc, report = train(cache, tmp_path)
    assert proc.returncode == 0, proc.stderr
    # Nothing was damaged (Theano ignores the unfinished folder); the lock the killed run held
    # is taken over at once, its process being gone.
    taken = f"took over the compile lock of {socket.gethostname()}:{child.pid}, a process that has ended"
    assert proc.stderr.splitlines() == [f"xor-gpu: warning: {taken}"]
    assert report["compile_cache"]["events"] == [f"warning: {taken}"]
    assert report["compile_cache"]["lock_wait_seconds"] < 1
    assert whole_modules_named(cache, so.name)
    assert report["predictions"] == warm[1]


def test_a_run_killed_while_it_links_lazylinker_leaves_nothing_a_later_run_trusts(tmp_path, warm):
    """SIGKILL to a run and its compiler as Theano's lazylinker_ext.so appears on a cold cache
    (linked in place, not in a tmp folder: it may be cut short). The next run takes over the
    lock at once, repairs the module if it was cut short (one line), and trains as any run."""
    cache = tmp_path / "compiledir"
    so = cache / "lazylinker_ext" / "lazylinker_ext.so"
    child = subprocess.Popen([sys.executable, "-m", "xor_gpu", "train", "--device", DEVICE, "--steps", STEPS],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                             env={**os.environ, "XOR_GPU_COMPILEDIR": str(cache)})
    try:
        assert _wait_for(so.exists, timeout=120, poll=0.001), "the run did not link lazylinker_ext in 120 s"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    damage = elf_damage(so)
    proc, report = train(cache, tmp_path)
    assert proc.returncode == 0, proc.stderr
    # The lock first: the repair removes a module holding it.
    lines = [f"xor-gpu: warning: took over the compile lock of {socket.gethostname()}:{child.pid}, "
             "a process that has ended"]
    if damage:
        lines.append(f"xor-gpu: warning: compile cache module {so} was damaged ({damage}); rebuilding it")
    assert proc.stderr.splitlines() == lines
    assert elf_damage(so) is None and report["predictions"] == warm[1]


def test_a_rebuild_that_fails_exits_1_and_the_next_run_repairs(cache, warm, tmp_path):
    # A full disk, as a file size limit: the compiler cannot write the module again.
    so = a_module(cache)
    limit = so.stat().st_size // 2
    reason = truncate(so)
    proc, report = train(cache, tmp_path, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE,
                                                                                 (limit, resource.RLIM_INFINITY)))
    lines = proc.stderr.splitlines()
    assert proc.returncode != 0 and report is None
    assert lines[0] == f"xor-gpu: warning: compile cache module {so} was damaged ({reason}); rebuilding it"
    if DEVICE == "cpu":  # on a GPU device the runtime's kernel compiler may meet the full disk first
        # Ours: the warning first, one error line last. Where the write fails decides what
        # comes between: nothing, a line of Theano's log, or (when g++ itself dies on the full
        # disk) Theano's dump of the failed compile.
        errors = [line for line in lines if line.startswith("xor-gpu: error: ")]
        assert proc.returncode == 1 and errors == [lines[-1]], lines[-3:]
        assert "Traceback" not in proc.stderr
    proc, report = train(cache, tmp_path)
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    assert whole_modules_named(cache, so.name) and report["predictions"] == warm[1]


def test_a_module_that_cannot_be_removed_exits_1_with_one_line(cache, tmp_path):
    so = a_module(cache)
    reason = truncate(so)
    with _unremovable(so.parent):
        proc, report = train(cache, tmp_path)
    assert proc.returncode == 1 and report is None
    assert proc.stderr.splitlines() == [
        f"xor-gpu: error: compile cache module {so} is damaged ({reason}) and cannot be removed "
        f"({'Operation not permitted' if os.geteuid() == 0 else 'Permission denied'}); delete {so.parent}"]
    assert so.exists()


def _give_to(folder, account):
    for path in [folder, *folder.rglob("*")]:
        os.lchown(path, account.uid, account.gid)


@pytest.mark.parametrize("whose", ["another user's", "writable by all"])
def test_a_compile_cache_others_can_change_is_refused_and_nothing_in_it_runs(whose, cache, tmp_path, nobody):
    """A module planted in the compile cache runs in the process that loads it (its constructor
    runs before Theano sees that the import fails). From one's own cache it is loaded, as the
    control shows; from a cache another user owns or can write, nothing is: one line, exit 3."""
    marker = tmp_path / "planted-ran"
    planted_library(a_module(cache), marker)
    proc, _ = train(cache, tmp_path)
    assert proc.returncode == 0 and PLANTED in marker.read_text(), proc.stderr  # the control
    marker.unlink()
    planted_library(a_module(cache), marker)
    if whose == "another user's":
        _give_to(cache, nobody)
        reason = "is not yours (owner nobody, mode 0700)"
    else:
        cache.chmod(0o777)
        reason = "can be changed by other users (owner root, mode 0777)"
    (tmp_path / "refused").mkdir()
    proc, report = train(cache, tmp_path / "refused")
    assert report is None and not marker.exists()
    one_line_error(proc, 3, f"cache folder {cache} {reason}: set XOR_GPU_COMPILEDIR to a folder of your own, "
                            f"or remove {cache}")


def test_pocl_cache_is_checked_before_an_opencl_run_starts(tmp_path, common, nobody, monkeypatch):
    """PoCL loads the kernels it compiled from its cache: another user's is refused before any
    OpenCL run; one's own is made private and given to PoCL by its real path."""
    theirs = common / "pocl"
    nobody.mkdir(theirs, 0o700)
    monkeypatch.setenv("POCL_CACHE_DIR", str(theirs))
    compile_cache.make_private(str(tmp_path / "compiledir"), opencl=False)  # a CPU run does not start PoCL
    refusal = f"cache folder {theirs} is not yours (owner nobody, mode 0700): set POCL_CACHE_DIR to a folder of your own"
    with pytest.raises(UnsafeFolder, match=re.escape(refusal)):
        compile_cache.make_private(str(tmp_path / "compiledir"), opencl=True)
    proc = run_cli("train", "--device", "opencl0:0", "--steps", STEPS,
                   env={"POCL_CACHE_DIR": str(theirs), "XOR_GPU_COMPILEDIR": str(tmp_path / "compiledir")})
    one_line_error(proc, 3, refusal)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.setenv("POCL_CACHE_DIR", str(tmp_path / "link" / "pocl"))
    compile_cache.make_private(str(tmp_path / "compiledir"), opencl=True)
    assert os.environ["POCL_CACHE_DIR"] == str(tmp_path / "real" / "pocl")
    assert (tmp_path / "real" / "pocl").stat().st_mode & 0o777 == 0o700


def test_the_compiledir_is_named_by_its_real_path(tmp_path, monkeypatch):
    """As Theano reads it (~ expanded, links resolved): the folder checked is the folder used."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XOR_GPU_COMPILEDIR", "~/link/theano")
    assert compile_cache.compiledir() == str(tmp_path / "real" / "theano")


def test_pocl_cache_default_is_pocls_own():
    assert compile_cache.pocl_cache({"POCL_CACHE_DIR": "/p", "XDG_CACHE_HOME": "/x"}) == "/p"
    assert compile_cache.pocl_cache({"XDG_CACHE_HOME": "/x"}) == "/x/pocl/kcache"


def test_unfinished_and_outside_modules_are_left_alone(tmp_path):
    """Only finished modules inside the compiledir are judged: a tmp folder without key.pkl is a
    compilation in progress (or abandoned), and a symlink may lead outside."""
    cache, outside = tmp_path / "compiledir", tmp_path / "outside"
    for folder in (cache / "tmpcompiling", outside):
        folder.mkdir(parents=True)
        (folder / "m.so").write_bytes(b"\x7fELF")
    (outside / "key.pkl").write_bytes(b"")
    (cache / "tmplink").symlink_to(outside)
    assert compile_cache.repair(str(cache)) == []
    assert (cache / "tmpcompiling" / "m.so").exists() and (outside / "m.so").exists()


def test_a_dead_owners_lock_is_taken_over_and_released(tmp_path, capsys):
    cache = tmp_path / "compiledir"
    so = _broken_module(cache)
    dead = subprocess.Popen(["true"])
    dead.wait()
    _lock(cache, dead.pid)
    start = time.monotonic()
    assert compile_cache.repair(str(cache)) == [str(so)]
    assert time.monotonic() - start < 5
    assert os.listdir(cache) == []  # the module and the lock are gone
    assert "was damaged (empty file)" in capsys.readouterr().err


def test_a_live_lock_is_waited_for(tmp_path):
    """Another process compiling holds Theano's lock: nothing is removed until it lets go."""
    cache = tmp_path / "compiledir"
    so = _broken_module(cache)
    release_in_2_s = "import shutil, sys, time; time.sleep(2); shutil.rmtree(sys.argv[1])"
    holder = subprocess.Popen([sys.executable, "-c", release_in_2_s, str(cache / "lock_dir")])
    _lock(cache, holder.pid)
    try:
        start = time.monotonic()
        compile_cache.repair(str(cache))
        waited = time.monotonic() - start
    finally:
        holder.wait()
    assert 1 < waited < 10 and not so.exists()


def _broken_module(cache):
    folder = cache / "tmpbroken"
    folder.mkdir(parents=True)
    (folder / "key.pkl").write_bytes(b"")
    (folder / "m.so").write_bytes(b"")
    return folder / "m.so"


def _lock(cache, pid):
    """Theano's compile lock on `cache`, owned by process `pid` of this host."""
    (cache / "lock_dir").mkdir()
    (cache / "lock_dir" / "lock").write_text(f"{pid}_0123456789_{socket.gethostname()}\n")


def _wait_for(predicate, timeout=120, poll=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(poll)
    return None


@contextlib.contextmanager
def _unremovable(folder):
    """`folder`'s files cannot be removed: read-only for a user, immutable (chattr +i) for root."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip(f"running as root on a file system without chattr +i ({folder}): "
                    "no folder can be made unremovable")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
