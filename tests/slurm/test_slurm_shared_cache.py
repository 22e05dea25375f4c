"""A task killed while it compiles into the cache the array shares stalls no other task (a real
one-node Slurm, tests/slurm/slurmlib.py, and the real offline bundle).

One array of three cpu checks, `sbatch xor_gpu_check_array.sbatch --cache DIR` (launcher
options after the script: the caches on a folder of the test's, as on a node-local scratch
disk, the bundle's archive in the submit folder). Task 0 runs as if on another node (a UTS
namespace named node-b, through the launcher the array runs) and is killed with SIGKILL
(its processes, as KillWait's end, the out-of-memory killer or a failed node leave it) while it
holds the compile lock; tasks 1 and 2 start once it holds it, wait, take the lock over within
the bound and PASS. The comparison then reports task 0's node, from its folder without a summary.
"""
import glob
import json
import os
import re
import signal
import time

import pytest

from slurmlib import KILL_WAIT

pytestmark = pytest.mark.slurm

OTHER_HOST = "node-b"
NODE = "localhost"  # the Slurm node, in the folders' names
BOUND = 15  # seconds a lock whose owner is gone may delay a run (xor_gpu/compile_lock.py)
# The launcher the array runs (XOR_GPU_BUNDLE_RUNNER): task 0 in a UTS namespace named node-b,
# the others once task 0 holds the compile lock of the cache they share.
LAUNCHER = f"""#!/usr/bin/env bash
set -euo pipefail
runner=$(dirname "$0")/xor_gpu-bundle-run.sh
if [[ $SLURM_ARRAY_TASK_ID == 0 ]]; then
    exec unshare -u bash -c 'hostname {OTHER_HOST} && exec bash "$@"' bash "$runner" "$@"
fi
for _ in $(seq 3000); do
    grep -qs '_{OTHER_HOST}$' "$XOR_GPU_TEST_CACHE"/*/theano/lock_dir/lock && break
    sleep 0.2
done
exec bash "$runner" "$@"
"""


def _first_line(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().strip()
    except OSError:
        return ""


def _held_while_compiling(cache):
    """The lock's owner line once task 0 holds it through a compilation (a module already
    made: the lock is then kept to the end of it), else ""."""
    for lock in glob.glob(f"{cache}/*/theano/lock_dir/lock"):
        owner = _first_line(lock)
        if owner.endswith(f"_{OTHER_HOST}") and glob.glob(f"{cache}/*/theano/tmp*/key.pkl"):
            return owner
    return ""


@pytest.fixture(scope="module")
def killed(cluster, submit_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("killed")
    submit, cache, home = submit_dir(base / "cluster"), base / "scratch", base / "home"
    home.mkdir()
    launcher = submit / "launch-as-node-b.sh"
    launcher.write_text(LAUNCHER)
    export = (f"--export=ALL,XOR_GPU_DEVICE=cpu,XOR_GPU_BUNDLE_RUNNER={launcher},XOR_GPU_TEST_CACHE={cache},"
              f"HOME={home},XDG_CACHE_HOME={home / '.cache'}")
    proc = cluster.run("sbatch", "--parsable", "--array=0-2", export, "xor_gpu_check_array.sbatch", "--cache", str(cache),
                       cwd=submit)
    assert proc.returncode == 0, proc.stderr
    job = int(proc.stdout.strip().split(";")[0])
    deadline, owner = time.monotonic() + 600, ""
    while not owner and time.monotonic() < deadline:
        owner = _held_while_compiling(cache)
        time.sleep(0.01)
    assert owner, f"task 0 never held the compile lock while compiling:\n{cluster.logs()[-3000:]}"
    # SIGKILL to the task's processes (its batch script's process group), with no SIGTERM
    # before it: what the out-of-memory killer, KillWait's end or a failed node leaves (scancel
    # --signal=KILL would cancel the job, which sends SIGTERM first).
    os.killpg(os.getpgid(int(owner.split("_")[0])), signal.SIGKILL)
    compare = cluster.run("sbatch", "--parsable", f"--dependency=afterany:{job}",
                          f"--export=ALL,CHECK_JOB={job},HOME={home},XDG_CACHE_HOME={home / '.cache'}",
                          "xor_gpu_compare.sbatch", "--cache", str(cache), cwd=submit)
    assert compare.returncode == 0, compare.stderr
    jobs = cluster.wait_for_jobs(900 + KILL_WAIT)
    tasks = {j["array_task_id"]: j for j in jobs if j.get("array_job_id") == job and j["name"] == "xor_gpu_check"}
    (comparison,) = [j for j in jobs if j["job_id"] == int(compare.stdout.strip())]
    return {"job": job, "owner": owner, "tasks": tasks, "compare": comparison, "submit": submit,
            "results": submit / "results"}


def _log(killed, name):
    path = killed["submit"] / name
    return path.read_text(errors="replace")[-4000:] if path.exists() else f"(no {name})"


def _summary(killed, task):
    return json.loads((killed["results"] / f"{killed['job']}_{task}-{NODE}" / "summary.json").read_text())


def test_the_killed_task_left_its_log_but_no_summary(killed):
    task = killed["tasks"][0]
    assert task["job_state"] != "COMPLETED" and task["exit_code"] & 0x7F == 9, (task["job_state"], task["exit_code"])
    folder = killed["results"] / f"{killed['job']}_0-{NODE}"
    assert not (folder / "summary.json").exists()
    assert f"node {OTHER_HOST}," in (folder / "check.log").read_text().splitlines()[0]


def test_the_other_tasks_take_the_lock_over_within_the_bound_and_pass(killed):
    pid = killed["owner"].split("_")[0]
    events = []
    for n in (1, 2):
        task = killed["tasks"][n]
        log = _log(killed, f"xor_gpu_check-{killed['job']}_{n}.out")
        assert (task["job_state"], task["exit_code"]) == ("COMPLETED", 0), log
        summary = _summary(killed, n)
        assert summary["status"] == "passed", summary["reason"]
        events += [e for run in summary["runs"].values() for e in run["compile_cache"]["events"]]
    taken = [e for e in events if "took over" in e]
    assert len(taken) == 1, events
    match = re.fullmatch(rf"warning: took over the compile lock of {OTHER_HOST}:{pid}, not refreshed for (\d+) s",
                         taken[0])
    assert match and int(match[1]) < BOUND, taken


def test_the_comparison_reports_the_killed_tasks_node(killed):
    log = _log(killed, f"xor_gpu_compare-{killed['compare']['job_id']}.out")
    assert (killed["compare"]["job_state"], killed["compare"]["exit_code"] >> 8) == ("FAILED", 5), log
    result = json.loads((killed["results"] / f"{killed['job']}-compare.json").read_text())
    nodes = result["nodes"]
    assert [(n["node"], n["device"], n["status"]) for n in nodes] == [
        (OTHER_HOST, "cpu", "INTERRUPTED"), (nodes[1]["node"], "cpu", "PASS"), (nodes[1]["node"], "cpu", "PASS")]
    assert nodes[0]["report"] == str(killed["results"] / f"{killed['job']}_0-{NODE}")
    assert nodes[0]["reason"].startswith("no summary.json: the check ended without writing one"), nodes[0]
    assert result["status_counts"] == {"PASS": 2, "FAIL": 0, "UNUSABLE": 0, "INTERRUPTED": 1}
    assert any(f"{OTHER_HOST}" in line and "INTERRUPTED: no summary.json" in line for line in log.splitlines()), log
