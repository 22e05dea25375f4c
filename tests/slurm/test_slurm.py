"""The fleet check on a real Slurm (Debian's slurmctld/slurmd 22.05 and munge, one node on
localhost, tests/slurm/slurmlib.py), with the real offline bundle, run the way README.md and
docs/gpu-validation.md show it: their `doc-test: slurm` block, as written, from a folder
holding dist/'s two files and bundle/slurm/*.sbatch.

One array of four tasks, one device each (XOR_GPU_DEVICE, a list in the environment):
cpu and opencl0:0 (PoCL) pass, cuda is unusable here (no NVIDIA driver), and the last
(opencl0:0) is given a one-minute time limit it cannot meet, so Slurm kills it (SIGTERM,
then SIGKILL after KillWait). The comparison job runs after all of them (afterany) and
reports every node.
"""
import json
import pathlib
import socket
import time

import pytest

from bundlelib import REPO
from docblocks import explain, run_block, shell_blocks

pytestmark = pytest.mark.slurm

DEVICES = ["cpu", "opencl0:0", "cuda", "opencl0:0"]  # task N checks DEVICES[N]
KILLED = 3  # the task whose time limit is cut to one minute
NODE = "localhost"  # the Slurm node; summaries record the host's name
HOST = socket.gethostname()
FLEET_TIMEOUT = 1200
SBATCH = sorted((REPO / "bundle" / "slurm").glob("*.sbatch"))


def _json(path):
    return json.loads(pathlib.Path(path).read_text())


def _blocks():
    blocks = shell_blocks("slurm")
    assert blocks, "no shell block of README.md or docs/*.md is marked <!-- doc-test: slurm -->"
    return blocks


@pytest.fixture(scope="session")
def fleet(cluster, submit_dir, tmp_path_factory):
    """Submits the documented block (the same commands in every document that shows them)
    and waits until the array and the comparison have ended."""
    base = tmp_path_factory.mktemp("fleet")
    submit = submit_dir(base / "cluster")
    home = base / "home"
    home.mkdir()
    block = _blocks()[0]
    started = time.monotonic()
    # HOME: the launcher's cache (the unpacked bundle, Theano's and PoCL's caches) starts empty.
    proc = run_block(block, submit, env={"SLURM_CONF": str(cluster.conf), "XOR_GPU_DEVICE": ",".join(DEVICES),
                                         "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")},
                     timeout=120)
    assert proc.returncode == 0, explain(block, proc)
    array = [j for j in cluster.jobs() if j["name"] == "xor_gpu_check"]
    assert array, f"the block submitted no xor_gpu_check job:\n{proc.stderr}"
    job = array[0]["array_job_id"]
    # One task's limit cut to a minute (as a user or admin may cut a job's). Slurm ends it 60-90 s
    # after its start (the limit is checked every 30 s); a check on PoCL with cold caches, beside
    # three other tasks, takes longer (its first training alone: 94-152 s measured here).
    cut = cluster.run("scontrol", "update", f"JobId={job}_{KILLED}", "TimeLimit=1")
    assert cut.returncode == 0, cut.stderr
    jobs = cluster.wait_for_jobs(FLEET_TIMEOUT)
    seconds = time.monotonic() - started
    print(f"slurm fleet: {seconds:.0f} s from submission to the comparison's end")
    tasks = {j["array_task_id"]: j for j in jobs if j["name"] == "xor_gpu_check" and j["array_job_id"] == job}
    compare = [j for j in jobs if j["name"] == "xor_gpu_compare"]
    return {"block": block, "submit": submit, "job": job, "tasks": tasks, "compare": compare, "cluster": cluster,
            "results": submit / "results"}


def _ended(job):
    """(state, exit status) of an ended job; squeue's exit_code is the wait status
    (a signal in the low bits, the exit status above)."""
    code = job["exit_code"]
    return job["job_state"], (code >> 8 if code & 0x7F == 0 else f"signal {code & 0x7F}")


def _task_log(fleet, task):
    path = fleet["submit"] / f"xor_gpu_check-{fleet['job']}_{task}.out"
    return path.read_text(errors="replace")[-4000:] if path.exists() else f"(no {path.name})"


@pytest.mark.parametrize("block", _blocks(), ids=str)
def test_documented_block_is_the_sequence_run(fleet, block):
    """Every slurm block of the documents is the one the fleet ran, character for character."""
    assert block.text == fleet["block"].text, f"{block} differs from {fleet['block']}, which the test ran"
    assert fleet["block"].text.count("sbatch ") == 2, fleet["block"].text


def test_array_tasks_end_in_the_states_their_devices_lead_to(fleet):
    tasks = fleet["tasks"]
    assert sorted(tasks) == list(range(len(DEVICES))), sorted(tasks)
    states = {n: _ended(t) for n, t in tasks.items()}
    for n in (0, 1):  # cpu and PoCL: every step passed
        assert states[n] == ("COMPLETED", 0), (n, states, _task_log(fleet, n))
    assert states[2] == ("FAILED", 3), (states, _task_log(fleet, 2))  # cuda: unusable without a driver
    assert states[KILLED][0] == "TIMEOUT" and tasks[KILLED]["state_reason"] == "TimeLimit", states
    assert "DUE TO TIME LIMIT" in _task_log(fleet, KILLED)
    assert tasks[KILLED]["time_limit"] == 1, tasks[KILLED]["time_limit"]
    assert all(t["nodes"] == NODE for t in tasks.values())


def _summary(fleet, task):
    folder = fleet["results"] / f"{fleet['job']}_{task}-{NODE}"
    assert (folder / "summary.json").is_file(), (task, sorted(p.name for p in folder.iterdir()), _task_log(fleet, task))
    return _json(folder / "summary.json")


def test_every_task_leaves_its_folder(fleet):
    """Task N: results/<job>_<N>-<node>/ with its check.log; the summaries of the tasks that ran
    to their end say so."""
    folders = sorted(p.name for p in fleet["results"].iterdir() if p.is_dir())
    assert folders == [f"{fleet['job']}_{n}-{NODE}" for n in range(len(DEVICES))], folders
    for n in (0, 1, 2):
        assert (fleet["results"] / f"{fleet['job']}_{n}-{NODE}" / "check.log").is_file(), n
        summary = _summary(fleet, n)
        assert summary["schema"] == "xor_gpu.check/1" and summary["device"]["requested"] == DEVICES[n]
        assert summary["config"]["engine"] == "theano" and summary["config"]["steps"] == 60000
    for n in (0, 1):
        summary = _summary(fleet, n)
        assert summary["passed"] is True and summary["exit_status"] == 0, summary["steps"]
        assert summary["device"]["active"] == DEVICES[n]
    assert _summary(fleet, 2)["passed"] is False and _summary(fleet, 2)["exit_status"] == 3


def test_summaries_say_how_each_task_ended(fleet):
    """status passed / unusable (with the reason) / interrupted: the killed task's summary is
    complete JSON with the steps done before Slurm's SIGTERM (none when it came during the
    first) and says when it came."""
    assert [_summary(fleet, n)["status"] for n in range(3)] == ["passed", "passed", "unusable"]
    assert "cuda" in _summary(fleet, 2)["reason"]
    assert (fleet["results"] / f"{fleet['job']}_{KILLED}-{NODE}" / "check.log").is_file()
    killed = _summary(fleet, KILLED)
    assert killed["status"] == "interrupted" and killed["interrupted_by"] == "SIGTERM", killed.get("status")
    assert killed["passed"] is False and killed["exit_status"] == 143 and "SIGTERM" in killed["reason"], killed
    assert all(step["status"] == "passed" for step in killed["steps"]), killed["steps"]


def _compare_log(fleet, job):
    return (fleet["submit"] / f"xor_gpu_compare-{job['job_id']}.out").read_text(errors="replace")


def test_comparison_runs_once_after_every_task(fleet):
    assert len(fleet["compare"]) == 1, fleet["compare"]
    compare = fleet["compare"][0]
    ended = max(t["end_time"] for t in fleet["tasks"].values())
    assert compare["start_time"] >= ended, (compare["start_time"], ended)  # afterany: also after failures
    assert _compare_log(fleet, compare).startswith("xor_gpu_compare: "), _compare_log(fleet, compare)[-3000:]
    print(f"compare (job {compare['job_id']}, {_ended(compare)}):\n{_compare_log(fleet, compare)}")


def test_comparison_reports_each_node_and_fails(fleet):
    """Not PASS everywhere: the comparison exits 5 (a verdict failed), with every node in its JSON
    and a closing line that counts the statuses."""
    compare = fleet["compare"][0]
    log = _compare_log(fleet, compare)
    assert f"{len(DEVICES)} reports of job {fleet['job']}" in log, log[-3000:]
    assert _ended(compare) == ("FAILED", 5), (_ended(compare), log[-3000:])
    result = _json(fleet["results"] / f"{fleet['job']}-compare.json")
    nodes = result["nodes"]
    assert [n["report"] for n in nodes] == [str(fleet["results"] / f"{fleet['job']}_{n}-{NODE}" / "summary.json")
                                           for n in range(len(DEVICES))]
    assert [(n["node"], n["device"], n["status"]) for n in nodes] == [
        (HOST, "cpu", "PASS"), (HOST, "opencl0:0", "PASS"), (HOST, "cuda", "UNUSABLE"), (HOST, "opencl0:0", "INTERRUPTED")]
    assert nodes[2]["reason"] and "cuda" in nodes[2]["reason"]
    assert result["status_counts"] == {"PASS": 2, "FAIL": 0, "UNUSABLE": 1, "INTERRUPTED": 1}
    closing = [line for line in log.splitlines() if line.startswith("fleet: ")]
    assert closing and closing[-1].startswith(f"fleet: {len(DEVICES)} nodes: 2 PASS"), log[-3000:]
    assert (fleet["results"] / f"{fleet['job']}-compare.png").stat().st_size > 0


def test_unknown_device_fails_the_task_before_anything_is_written(cluster, submit_dir, tmp_path):
    """Under Slurm: an unknown device is the task's exit 2, refused by xor-gpu itself (the sbatch
    copies none of its rules) in one line at the end of the task's log, and no results folder."""
    submit = submit_dir(tmp_path / "cluster")
    home = tmp_path / "home"
    home.mkdir()
    proc = cluster.run("sbatch", "--parsable", "--array=0", "--export=ALL,XOR_GPU_DEVICE=tpu0,HOME=" + str(home),
                       "xor_gpu_check_array.sbatch", cwd=submit)
    assert proc.returncode == 0, proc.stderr
    job = int(proc.stdout.strip().split(";")[0])
    task = next(j for j in cluster.wait_for_jobs(120) if j["array_job_id"] == job)
    assert _ended(task) == ("FAILED", 2), _ended(task)
    log = submit / f"xor_gpu_check-{job}_0.out"
    assert log.read_text().splitlines()[-1] == ("xor-gpu: error: unknown device 'tpu0': use cpu, cuda, cudaN "
                                                "(e.g. cuda0) or openclP:D (e.g. opencl0:0)"), log.read_text()
    copied = ["xor_gpu-bundle.tar.gz", "xor_gpu-bundle-run.sh", *(p.name for p in SBATCH)]
    assert sorted(p.name for p in submit.iterdir()) == sorted([log.name, *copied])
    # Only the bundle, unpacked once for this node's later tasks: no folder of the check's.
    assert sorted(p.name for p in home.iterdir()) == [".cache"]
