"""Where a report was made, so that reports from many machines can be told apart: the host,
its system, the image or offline bundle it ran from (their manifest), the batch job."""
import json
import os
import platform
import socket

# The image writes its manifest here; the offline bundle points XOR_GPU_MANIFEST at its own.
MANIFEST_DEFAULT = "/etc/xor_gpu/manifest.json"


def read_manifest():
    """The image's or the bundle's manifest as a dict (with its path), or None outside them.
    The bundle's checksum of every file (for its launcher) is given as their number."""
    path = os.environ.get("XOR_GPU_MANIFEST", MANIFEST_DEFAULT)
    try:
        with open(path, encoding="utf-8") as f:
            found = {"path": path, **json.load(f)}
    except (OSError, ValueError):
        return None
    if isinstance(found.get("files"), dict):
        found["files"] = len(found["files"])
    return found


# What names a batch job and its task: Slurm's variables (an array's task too).
SLURM_JOB = (("job_id", "SLURM_JOB_ID"), ("name", "SLURM_JOB_NAME"), ("array_job_id", "SLURM_ARRAY_JOB_ID"),
             ("array_task_id", "SLURM_ARRAY_TASK_ID"), ("cpus_per_task", "SLURM_CPUS_PER_TASK"))


def batch_job(environ=None):
    """{"scheduler": "slurm", "job_id", ...} of the batch job this process runs in, or None."""
    environ = os.environ if environ is None else environ
    if not environ.get("SLURM_JOB_ID"):
        return None
    return {"scheduler": "slurm", **{key: environ[name] for key, name in SLURM_JOB if environ.get(name)}}


def here():
    """This process' origin, as reports record it: the host, its system, the image or bundle
    it runs from, and the batch job (Slurm's) it runs in."""
    where = {"host": socket.gethostname(), "os": platform.platform()}
    job = batch_job()
    if job:
        where["job"] = job
    m = read_manifest()
    if m:  # the image's manifest names the image, the bundle's is schema xor_gpu.bundle/1
        where["package"] = {
            "kind": "image" if "image" in m else "bundle",
            "name": m.get("image", "xor_gpu-bundle"),
            "git_commit": m.get("vcs_ref") or m.get("git_commit") or "",
            "built": m.get("build_date") or m.get("built") or "",
        }
    return where
