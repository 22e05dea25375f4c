"""The compile lock of a cache that many processes share (xor_gpu/compile_lock.py), with real
processes: a lock whose owner is gone, on this host or on another (a UTS namespace with the
host name node-b stands for another node of a cluster), is taken over within 15 s and said in
one line; a live owner, however long it holds the lock and even with its GIL held, is waited
for; two processes never hold it at once, also when many find one stale lock together; and
trainings started together on an empty cache compile each module once, in one process.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from xor_gpu import compile_lock
from xor_gpu.compile_lock import BEATS, HEARTBEAT, STALE
from xorlib import DEVICE

OTHER_HOST = "node-b"
BOUND = 15  # seconds a lock whose owner is gone may delay a run
# A process that holds the lock of the cache argv[1]: it says "held", keeps it argv[3] seconds
# (in time.sleep, or with "gil" in libc's sleep through ctypes.PyDLL: its GIL held all along),
# then says "released" with the time.
HOLD = """
import ctypes, sys, time
from xor_gpu import compile_lock
with compile_lock.held(sys.argv[1]):
    print("held", flush=True)
    if sys.argv[2] == "gil":
        ctypes.PyDLL(None).sleep(int(sys.argv[3]))
    else:
        time.sleep(float(sys.argv[3]))
print("released", time.time(), flush=True)
"""
# N turns of taking the lock of argv[1], each noted in the file argv[2] as "in PID" then "out PID".
TURNS = """
import os, sys, time
from xor_gpu import compile_lock
for _ in range(int(sys.argv[3])):
    with compile_lock.held(sys.argv[1]):
        with open(sys.argv[2], "a") as f:
            f.write(f"in {os.getpid()}\\n")
        time.sleep(0.05)
        with open(sys.argv[2], "a") as f:
            f.write(f"out {os.getpid()}\\n")
"""


def elsewhere(argv):
    """argv run as if on another node: in a UTS namespace of its own named OTHER_HOST."""
    return ["unshare", "-u", "sh", "-c", f'hostname {OTHER_HOST} && exec "$@"', "sh", *argv]


@pytest.fixture(scope="module")
def namespaces():
    probe = subprocess.run(elsewhere(["hostname"]), capture_output=True, text=True)
    if probe.returncode != 0 or probe.stdout.strip() != OTHER_HOST:
        pytest.skip(f"cannot make a UTS namespace here (unshare -u needs root): {probe.stderr.strip()}")


def start(argv, **kwargs):
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **kwargs)


def holder(cache, how, seconds, other_host=False):
    argv = [sys.executable, "-c", HOLD, str(cache), how, str(seconds)]
    proc = start(elsewhere(argv) if other_host else argv)
    assert proc.stdout.readline() == "held\n", proc.communicate()
    return proc


def lock_text(cache):
    return compile_lock.read(compile_lock.lock_file(str(cache)))


def test_a_held_lock_beats_and_is_gone_after(tmp_path):
    """The lock file names this process and changes every HEARTBEAT s while it is held."""
    cache = tmp_path / "cache"
    proc = holder(cache, "sleep", 3 * HEARTBEAT)
    seen = set()
    while proc.poll() is None:
        seen.add(lock_text(cache))
        time.sleep(0.1)
    texts = sorted(t for t in seen if t)
    assert len(texts) >= 2, texts
    assert all(re.fullmatch(rf"{proc.pid}_\d{{10}}_{re.escape(socket.gethostname())}\n{BEATS}\n", t) for t in texts)
    assert proc.stdout.read().startswith("released") and sorted(os.listdir(cache)) == []


def test_a_lock_of_a_process_of_this_host_that_ended_is_taken_over_at_once(tmp_path):
    cache = tmp_path / "cache"
    proc = holder(cache, "sleep", 600)
    os.killpg(proc.pid, signal.SIGKILL)  # the holder and its heartbeat
    proc.wait()
    started = time.monotonic()
    taker = holder(cache, "sleep", 0)
    assert time.monotonic() - started < 5
    _, stderr = taker.communicate()
    assert stderr.splitlines() == [f"xor-gpu: warning: took over the compile lock of "
                                   f"{socket.gethostname()}:{proc.pid}, a process that has ended"]


def test_a_silent_lock_of_another_host_is_taken_over_within_the_bound(tmp_path, namespaces):
    cache = tmp_path / "cache"
    proc = holder(cache, "sleep", 600, other_host=True)
    assert lock_text(cache).split("\n")[0].endswith(f"_{OTHER_HOST}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    started = time.monotonic()
    taker = holder(cache, "sleep", 0)
    waited = time.monotonic() - started
    _, stderr = taker.communicate()
    assert STALE <= waited < BOUND, waited
    assert re.fullmatch(rf"xor-gpu: warning: took over the compile lock of {OTHER_HOST}:{proc.pid}, "
                        rf"not refreshed for 1\d s\n", stderr), stderr


def test_a_live_lock_held_longer_than_the_timeout_is_never_taken_over(tmp_path, namespaces):
    """Another host's process holds the lock for STALE + 5 s, its main thread in native code
    with the GIL held all along: its heartbeat goes on, and the waiter waits it out."""
    cache = tmp_path / "cache"
    proc = holder(cache, "gil", int(STALE) + 5, other_host=True)
    taker = holder(cache, "sleep", 0)
    got = time.time()
    released = float(proc.stdout.read().split()[1])
    _, stderr = taker.communicate()
    proc.wait()
    assert got >= released, (got, released)
    assert re.fullmatch(rf"xor-gpu: waiting for the compile lock of {re.escape(str(cache))}: {OTHER_HOST}:{proc.pid} "
                        rf"is compiling \(refreshed \d s ago\)\n", stderr), stderr


def test_two_processes_never_hold_it_at_once_even_when_all_find_it_stale(tmp_path):
    """Six processes take turns; they start on a stale lock of another host (as after a killed
    task), which one of them takes over: the turns never overlap."""
    cache, log = tmp_path / "cache", tmp_path / "turns.log"
    (cache / "lock_dir").mkdir(parents=True)
    (cache / "lock_dir" / "lock").write_text(f"4242_0123456789_{OTHER_HOST}\n{BEATS}\n")
    procs = [start([sys.executable, "-c", TURNS, str(cache), str(log), "5"]) for _ in range(6)]
    stderr = "".join(p.communicate()[1] for p in procs)
    assert all(p.returncode == 0 for p in procs), stderr
    turns = log.read_text().split("\n")[:-1]
    assert len(turns) == 2 * 6 * 5
    for entered, left in zip(turns[::2], turns[1::2]):
        assert entered.startswith("in ") and left == f"out {entered[3:]}", turns
    assert stderr.count("took over the compile lock of") == 1, stderr
    assert sorted(os.listdir(cache)) == []


def test_trainings_started_together_on_an_empty_cache_compile_each_module_once(tmp_path, device):
    """Eight trainings on one cold cache: one compiles, holding the lock through its whole
    compilation; the others wait, then find every module made. All end bitwise equal."""
    alone, shared = tmp_path / "alone", tmp_path / "shared"
    runs = [_train(alone, tmp_path / "alone.json")]
    assert runs[0]["compile_cache"] == {"folder": str(alone), "lock_wait_seconds": 0, "events": []}  # said nothing
    procs = [_train(shared, tmp_path / f"{i}.json", wait=False) for i in range(8)]
    runs += [_finish(proc, tmp_path / f"{i}.json") for i, proc in enumerate(procs)]
    cold, together = runs[0], runs[1:]
    assert sum(r["new_compiled_modules"] for r in together) == cold["new_compiled_modules"] > 0
    assert sorted(r["new_compiled_modules"] for r in together)[:-1] == [0] * 7
    assert len([p for p in shared.iterdir() if p.name.startswith("tmp")]) == cold["new_compiled_modules"]
    assert len({r["weights_sha256"] for r in runs}) == 1
    for r in together:
        assert not any("took over" in e for e in r["compile_cache"]["events"]), r["compile_cache"]
        assert r["compile_cache"]["folder"] == str(shared)


def _train(cache, report, wait=True):
    proc = start([sys.executable, "-m", "xor_gpu", "train", "--device", DEVICE, "--steps", "5", "--json", str(report)],
                 env={**os.environ, "XOR_GPU_COMPILEDIR": str(cache)})
    return _finish(proc, report) if wait else proc


def _finish(proc, report):
    _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    data = json.loads(report.read_text())
    assert stderr.splitlines() == [f"xor-gpu: {e}" for e in data["compile_cache"]["events"]]  # each said once
    return data
