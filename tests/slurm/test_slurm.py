"""The fleet check on a real Slurm (Debian's slurmctld/slurmd 22.05 and munge, one node on
localhost, tests/slurm/cluster.py), with the real offline bundle, run the way README.md and
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
import time

import pytest

from slurmlib import KILL_WAIT
from docblocks import explain, run_block, shell_blocks

pytestmark = pytest.mark.slurm

DEVICES = ["cpu", "opencl0:0", "cuda", "opencl0:0"]  # task N checks DEVICES[N]
KILLED = 3  # the task whose time limit is cut to one minute
NODE = "localhost"
FLEET_TIMEOUT = 1200


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
    cut = cluster.run("scontrol", "update", f"JobId={job}_{KILLED}", "TimeLimit=1")
    assert cut.returncode == 0, cut.stderr
    jobs = cluster.wait_for_jobs(FLEET_TIMEOUT)
    seconds = time.monotonic() - started
    print(f"slurm fleet: {seconds:.0f} s from submission to the comparison's end")
    tasks = {j["array_task_id"]: j for j in jobs if j["name"] == "xor_gpu_check" and j["array_job_id"] == job}
    compare = [j for j in jobs if j["name"] == "xor_gpu_compare"]
    return {"block": block, "submit": submit, "job": job, "tasks": tasks, "compare": compare, "cluster": cluster,
            "results": submit / "results"}


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
    states = {n: (t["job_state"], t["exit_code"]) for n, t in tasks.items()}
    for n in (0, 1):  # cpu and PoCL: every step passed
        assert states[n] == ("COMPLETED", 0), (n, states, _task_log(fleet, n))
    assert states[2][0] == "FAILED" and states[2][1] == 3, (states, _task_log(fleet, 2))  # cuda unusable
    assert states[KILLED][0] == "TIMEOUT" and tasks[KILLED]["state_reason"] == "TimeLimit", states
    assert tasks[KILLED]["time_limit"] == 1, tasks[KILLED]["time_limit"]
    assert all(t["nodes"] == NODE for t in tasks.values())


def test_every_task_leaves_its_folder(fleet):
    """Task N: results/<job>_<N>-<node>/ with its check.log; a summary.json that says what happened."""
    folders = sorted(p.name for p in fleet["results"].iterdir() if p.is_dir())
    assert folders == [f"{fleet['job']}_{n}-{NODE}" for n in range(len(DEVICES))], folders
    summaries = {}
    for n, device in enumerate(DEVICES):
        folder = fleet["results"] / f"{fleet['job']}_{n}-{NODE}"
        assert (folder / "check.log").is_file(), (n, sorted(p.name for p in folder.iterdir()))
        assert (folder / "summary.json").is_file(), (n, sorted(p.name for p in folder.iterdir()), _task_log(fleet, n))
        summaries[n] = _json(folder / "summary.json")
        assert summaries[n]["schema"] == "xor_gpu.check/1" and summaries[n]["device"]["requested"] == device
        assert summaries[n]["config"]["engine"] == "theano" and summaries[n]["config"]["steps"] == 60000
    for n in (0, 1):
        assert summaries[n]["passed"] is True and summaries[n]["status"] == "passed", summaries[n]["steps"]
        assert summaries[n]["device"]["active"] == DEVICES[n]
    assert summaries[2]["status"] == "unusable" and summaries[2]["exit_status"] == 3
    assert "cuda" in summaries[2]["reason"]
    killed = summaries[KILLED]
    assert killed["status"] == "interrupted" and killed["interrupted_by"] == "SIGTERM", killed.get("status")
    assert killed["passed"] is False and killed["steps"], killed["steps"]  # the steps done before the signal


def test_comparison_runs_after_every_task_and_reports_each_node(fleet):
    assert len(fleet["compare"]) == 1, fleet["compare"]
    compare = fleet["compare"][0]
    ended = max(t["end_time"] for t in fleet["tasks"].values())
    assert compare["start_time"] >= ended, (compare["start_time"], ended)  # afterany: also after failures
    assert compare["dependency"] == "" or "afterany" in compare["dependency"], compare["dependency"]
    log = (fleet["submit"] / f"xor_gpu_compare-{compare['job_id']}.out").read_text(errors="replace")
    assert f"{len(DEVICES)} reports of job {fleet['job']}" in log, log[-3000:]
    # Not PASS everywhere: the comparison exits 5 (a verdict failed), with every node in its JSON.
    assert (compare["job_state"], compare["exit_code"]) == ("FAILED", 5), (compare["job_state"], log[-3000:])
    result = _json(fleet["results"] / f"{fleet['job']}-compare.json")
    nodes = result["nodes"]
    assert [n["report"] for n in nodes] == [str(fleet["results"] / f"{fleet['job']}_{n}-{NODE}" / "summary.json")
                                           for n in range(len(DEVICES))]
    assert [(n["device"], n["status"]) for n in nodes] == [
        ("cpu", "PASS"), ("opencl0:0", "PASS"), ("cuda", "UNUSABLE"), ("opencl0:0", "INTERRUPTED")]
    assert nodes[2]["reason"] and "cuda" in nodes[2]["reason"]
    assert result["status_counts"] == {"PASS": 2, "FAIL": 0, "UNUSABLE": 1, "INTERRUPTED": 1}
    closing = [line for line in log.splitlines() if line.startswith("fleet: ")]
    assert closing and closing[-1].startswith(f"fleet: {len(DEVICES)} nodes: 2 PASS"), log[-3000:]
    assert (fleet["results"] / f"{fleet['job']}-compare.png").stat().st_size > 0
    print(f"compare (job {compare['job_id']}, exit {compare['exit_code']}):\n{log}")


def test_unknown_device_fails_the_task_before_anything_is_written(cluster, submit_dir, tmp_path):
    """Under Slurm: an unknown device is the task's exit 2, one line in its log, no results folder,
    and the launcher never ran (the bundle was not unpacked)."""
    submit = submit_dir(tmp_path / "cluster")
    home = tmp_path / "home"
    home.mkdir()
    proc = cluster.run("sbatch", "--parsable", "--array=0", "--export=ALL,XOR_GPU_DEVICE=tpu0,HOME=" + str(home),
                       str(submit / "xor_gpu_check_array.sbatch"))
    assert proc.returncode == 0, proc.stderr
    job = int(proc.stdout.strip().split(";")[0])
    deadline = time.monotonic() + 120
    while True:
        task = next(j for j in cluster.jobs() if j["array_job_id"] == job)
        if task["job_state"] not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert (task["job_state"], task["exit_code"]) == ("FAILED", 2), task["job_state"]
    log = (submit / f"xor_gpu_check-{job}_0.out").read_text()
    assert log.splitlines() == ["xor_gpu_check: error: unknown device 'tpu0' in XOR_GPU_DEVICE: "
                                "cpu, cuda, cudaN or openclP:D"], log
    assert not (submit / "results").exists() and list(home.iterdir()) == []
