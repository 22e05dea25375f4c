"""What a run leaves behind: its train report (schema in README.md and xor_gpu.results),
written as JSON (xor_gpu.files); the text is xor_gpu.render's.
"""
import json
import os
import platform
import socket

from xor_gpu import host
from xor_gpu.problem import CONVERGENCE_MARGIN, INPUTS, TARGETS, row_key
from xor_gpu.results.schemas import SEEDS_SCHEMA, TRAIN_SCHEMA

# The image writes its manifest here; the offline bundle points XOR_GPU_MANIFEST at its own.
MANIFEST_DEFAULT = "/etc/xor_gpu/manifest.json"


def read_manifest():
    """The image's or the bundle's manifest as a dict (with its path), or None outside them."""
    path = os.environ.get("XOR_GPU_MANIFEST", MANIFEST_DEFAULT)
    try:
        with open(path, encoding="utf-8") as f:
            return {"path": path, **json.load(f)}
    except (OSError, ValueError):
        return None


def origin():
    """Where a report was made, so that reports from many machines can be told apart: the host,
    its system, the image or bundle it ran from, and the batch job (Slurm's) it ran in."""
    where = {"host": socket.gethostname(), "os": platform.platform()}
    job = host.batch_job()
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


def train_report(result):
    c = result.config
    return {
        "schema": TRAIN_SCHEMA,
        "config": c.to_dict(),
        "device": {"requested": c.device, "active": result.device_active, "name": result.device_name},
        "floatX": c.floatx,
        "versions": result.versions,
        "blas": result.blas,
        "cudnn": result.cudnn,
        "origin": origin(),
        "predictions": {row_key(r): p for r, p in zip(INPUTS, result.predictions)},
        "targets": {row_key(r): t for r, t in zip(INPUTS, TARGETS)},
        "final_loss": result.final_loss,
        "loss_history": {"every": result.history_every, "values": result.loss_history},
        "compile_seconds": result.compile_seconds,
        "first_step_seconds": result.first_step_seconds,
        "train_seconds": result.train_seconds,
        "steps_per_second": result.steps_per_second,
        "new_compiled_modules": result.new_compiled_modules,
        "ops": result.ops,
        "convergence_margin": CONVERGENCE_MARGIN,
        "converged": result.converged,
        "weights_sha256": result.weights_sha256,
        "final_weights": result.final_weights,
    }


def seeds_report(results):
    """`train --seeds`: the train report of every seed, keyed by the seed as text (JSON keys)."""
    return {"schema": SEEDS_SCHEMA, "device": results[0].config.device,
            "seeds": [r.config.seed for r in results],
            "runs": {str(r.config.seed): train_report(r) for r in results}}
