"""Where a report was made (xor_gpu.origin): the host, the image or bundle it ran from as
their manifests name them, and the Slurm job."""
import json
import socket

from xor_gpu import origin


def test_a_plain_install_names_the_host_and_its_system(monkeypatch, tmp_path):
    monkeypatch.setenv("XOR_GPU_MANIFEST", str(tmp_path / "none.json"))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert origin.read_manifest() is None
    here = origin.here()
    assert set(here) == {"host", "os"} and here["host"] == socket.gethostname()


def test_the_image_and_the_bundle_are_named_from_their_manifests(monkeypatch, tmp_path):
    image = tmp_path / "image.json"
    image.write_text(json.dumps({"image": "xor-gpu:cpu", "vcs_ref": "ecada8f", "build_date": "2026-12-04"}))
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"schema": "xor_gpu.bundle/1", "git_commit": "39cd6d3", "built": "2026-12-04",
                                  "files": {"run.sh": "0" * 64, "root/usr/bin/python3.11": "1" * 64}}))
    monkeypatch.setenv("XOR_GPU_MANIFEST", str(image))
    assert origin.here()["package"] == {"kind": "image", "name": "xor-gpu:cpu", "git_commit": "ecada8f",
                                        "built": "2026-12-04"}
    monkeypatch.setenv("XOR_GPU_MANIFEST", str(bundle))
    assert origin.here()["package"] == {"kind": "bundle", "name": "xor_gpu-bundle", "git_commit": "39cd6d3",
                                        "built": "2026-12-04"}
    assert origin.read_manifest()["path"] == str(bundle)
    # The checksum of every file is for the bundle's launcher: reports and doctor get their number.
    assert origin.read_manifest()["files"] == 2


def test_a_slurm_task_names_its_job(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "81")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    job = origin.here()["job"]
    assert job["scheduler"] == "slurm" and job["job_id"] == "81" and job["array_task_id"] == "1"


def test_the_batch_job_is_named_by_slurms_variables():
    assert origin.batch_job({}) is None
    assert origin.batch_job({"SLURM_JOB_ID": "81", "SLURM_ARRAY_JOB_ID": "80", "SLURM_ARRAY_TASK_ID": "1",
                             "SLURM_JOB_NAME": "xor", "SLURM_CPUS_PER_TASK": "2"}) == {
        "scheduler": "slurm", "job_id": "81", "name": "xor", "array_job_id": "80", "array_task_id": "1",
        "cpus_per_task": "2"}
