"""The documents' Docker blocks, run as written in a fresh copy of the tree, the way a user
runs them: the Quick start's main job (scripts/bootstrap --docker, then compose builds the
image itself with the pip CA bootstrap wrote to .env), the compose commands, the CI recipe,
the cuda build and the regeneration of the committed reference.

Two settings keep the suite's own state apart, without changing a command: a compose project
of its own (COMPOSE_PROJECT_NAME, own volumes) and an image name of its own (XOR_GPU_IMAGE):
compose builds these images as a user's plain `docker compose` does, without the manifest's
git commit that scripts/docker-build adds to the suite's images. Both are removed at the end.
"""
import json
import os
import re
import shutil
import uuid

import pytest

from docblocks import block, explain, repo_copy, run_block
from dockerlib import REPO, sh

pytestmark = pytest.mark.docker

MAIN_JOB = block("docker", "scripts/bootstrap --docker && docker compose run --rm train")
COMPOSE = block("docker", "docker compose run --rm train ")
OTHER_SYSTEMS = block("docker", "mkdir -p -m a+rwx out")  # Which systems: the image on any Linux
CI_RECIPE = block("docker", "docker compose build train")
CUDA_BUILD = block("docker", "scripts/docker-build cuda")
REFERENCE = block("docker", "scripts/docker-build cpu")
BUILD_ALL = block("docker", "scripts/docker-build all")
AROUND = block("docker", "mkdir -p out && chown 1000:1000 out")
IMAGE = "xor-gpu-doc"


@pytest.fixture(scope="module")
def user(docker, tmp_path_factory):
    """A fresh clone and the variables that keep its compose project and images apart."""
    tree = repo_copy(tmp_path_factory.mktemp("clone"))
    project = f"xor-gpu-doc-{uuid.uuid4().hex[:8]}"
    env = {"COMPOSE_PROJECT_NAME": project, "XOR_GPU_IMAGE": IMAGE}
    sh("docker", "image", "rm", f"{IMAGE}:cpu", f"{IMAGE}:cuda", check=False)  # as in a fresh clone: none yet
    if "XOR_GPU_OUT" in os.environ:
        env["XOR_GPU_OUT"] = str(tree / "out")
    yield tree, env
    sh("docker", "compose", "--profile", "gpu", "down", "--volumes", "--remove-orphans", check=False, cwd=tree,
       env=env)
    sh("docker", "image", "rm", f"{IMAGE}:cpu", f"{IMAGE}:cuda", check=False)


@pytest.fixture(scope="module")
def main_job(user):
    tree, env = user
    return run_block(MAIN_JOB, tree, env, timeout=2400)


def run_after_main_job(doc, user, main_job, timeout=2400):
    """Run DOC in the user's clone, once the main job (which built the image there) passed;
    (tree, the finished process) when the block exited 0."""
    tree, env = user
    assert main_job.returncode == 0, explain(MAIN_JOB, main_job)
    proc = run_block(doc, tree, env, timeout=timeout)
    assert proc.returncode == 0, explain(doc, proc)
    return tree, proc


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# compose's own progress lines: " train Pulling", " train Warning Get https://registry-1.docker.io ..."
COMPOSE_PULL = re.compile(r"^\s*[\w-]+ (Pulling|Pulled|Warning)\b", re.M)


@pytest.mark.parametrize("doc", [MAIN_JOB], ids=str)
def test_quick_start_main_job_runs_as_written(doc, user, main_job):
    """A newcomer's first screen: bootstrap, then compose builds the image (the clone has none)
    at once, without asking a registry for it first (no "Pulling", no "Warning")."""
    tree, _ = user
    assert main_job.returncode == 0, explain(doc, main_job)
    assert not COMPOSE_PULL.search(main_job.stdout + main_job.stderr), explain(doc, main_job)
    assert "building with" in main_job.stdout + main_job.stderr, "the fresh clone's image was not built by this run"
    report = load(tree / "out" / "report.json")
    assert report["converged"] is True and report["device"]["active"] == "cpu"
    assert report["config"]["steps"] == 60000
    # the CA bundle came from bootstrap's .env, the same one the suite's builds use
    ours = [line for line in (tree / ".env").read_text().splitlines() if line.startswith("XOR_GPU_PIP_CA=")]
    repo_env = REPO / ".env"
    theirs = [line for line in repo_env.read_text().splitlines() if line.startswith("XOR_GPU_PIP_CA=")] \
        if repo_env.exists() else []
    assert ours == theirs


@pytest.mark.parametrize("doc", [COMPOSE], ids=str)
def test_compose_commands_run_as_written(doc, user, main_job):
    """Including `docker compose run --rm test`: the cpu, opencl and gpu envs in the cuda image;
    on a host without an NVIDIA GPU the gpu env's device tests skip and say why."""
    tree, proc = run_after_main_job(doc, user, main_job, timeout=3600)
    report = load(tree / "out" / "report.json")  # the second train: arguments passed through
    assert report["config"]["steps"] == 1000 and report["device"]["active"] == "opencl0:0"
    summary = load(tree / "out" / "check" / "summary.json")
    assert summary["passed"] is True and summary["device"]["requested"] == "cpu"
    out = proc.stdout + proc.stderr
    for env_name in ("cpu", "opencl", "gpu"):
        assert f"  {env_name}: OK" in out, out[-3000:]
    if "nvidia" not in sh("docker", "info", "--format", "{{json .Runtimes}}").stdout:
        assert "SKIPPED" in out and "no usable CUDA GPU" in out, out[-3000:]
    assert "/etc/xor_gpu/manifest.json" in proc.stdout  # doctor in the image


@pytest.mark.parametrize("doc", [OTHER_SYSTEMS], ids=str)
def test_the_image_route_needs_nothing_but_docker(doc, user, main_job, tmp_path):
    """Which systems: the route of hosts bootstrap refuses, in a clone bootstrap never ran in (no
    .venv, no .env, no out) and with only bash, mkdir and docker on PATH: no Python, no apt.
    Behind a proxy the README has the user export XOR_GPU_PIP_CA, as here (for a build, were
    the images missing)."""
    _, env = user
    assert main_job.returncode == 0, explain(MAIN_JOB, main_job)
    tree = repo_copy(tmp_path / "clone")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "mkdir", "docker"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {**env, "PATH": str(bin_dir), "XOR_GPU_OUT": str(tree / "out")}
    repo_env = REPO / ".env"
    for line in repo_env.read_text().splitlines() if repo_env.exists() else []:
        if line.startswith("XOR_GPU_PIP_CA="):
            env["XOR_GPU_PIP_CA"] = line.split("=", 1)[1]
    proc = run_block(doc, tree, env, timeout=3600)
    assert proc.returncode == 0, explain(doc, proc)
    report = load(tree / "out" / "report.json")
    assert report["converged"] is True and report["device"]["active"] == "cpu", report["device"]
    out = proc.stdout + proc.stderr
    for env_name in ("cpu", "opencl", "gpu"):
        assert f"  {env_name}: OK" in out, out[-3000:]
    assert not any((tree / name).exists() for name in (".venv", ".env")), "something set the host up"


@pytest.mark.parametrize("doc", [CI_RECIPE], ids=str)
def test_ci_recipe_runs_as_written(doc, user, main_job):
    tree, _ = run_after_main_job(doc, user, main_job)
    assert load(tree / "out" / "report.json")["converged"] is True  # written by `train --check`


@pytest.mark.parametrize("doc", [CUDA_BUILD], ids=str)
def test_cuda_build_runs_as_written(doc, user, main_job):
    run_after_main_job(doc, user, main_job)
    assert sh("docker", "image", "inspect", "-f", "{{.Config.User}}", f"{IMAGE}:cuda").stdout.strip() == "xor"


@pytest.mark.parametrize("doc", [BUILD_ALL], ids=str)
def test_build_of_both_images_runs_as_written(doc, user, main_job):
    """docs/docker.md's build: both images, their manifests naming the clone's commit."""
    tree, _ = run_after_main_job(doc, user, main_job)
    commit = sh("git", "rev-parse", "--short=12", "HEAD", cwd=tree).stdout.strip()
    for target in ("cpu", "cuda"):
        manifest = json.loads(sh("docker", "run", "--rm", "--network", "none", "--entrypoint", "cat",
                                 f"{IMAGE}:{target}", "/etc/xor_gpu/manifest.json").stdout)
        assert manifest["target"] == target and manifest["vcs_ref"].startswith(commit), manifest.get("vcs_ref")


@pytest.mark.parametrize("doc", [REFERENCE], ids=str)
def test_regenerating_the_reference_reproduces_it(doc, user, main_job):
    """docs/reference.md's recipe, in the clone: the new file is the committed one's training,
    bit for bit (same final weights and predictions)."""
    tree, _ = run_after_main_job(doc, user, main_job)
    new = load(tree / "xor_gpu" / "reference" / "seed-cpu-float32.json")
    committed = load(REPO / "xor_gpu" / "reference" / "seed-cpu-float32.json")
    assert new["weights_sha256"] == committed["weights_sha256"]
    assert new["predictions"] == committed["predictions"]


@pytest.mark.parametrize("doc", [AROUND], ids=str)
def test_out_folder_and_dropping_the_volumes_run_as_written(doc, user, main_job):
    """Last: `docker compose down -v` drops this project's cache volumes (made by the runs above)."""
    tree, env = user
    assert main_job.returncode == 0, explain(MAIN_JOB, main_job)
    volumes = ["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={env['COMPOSE_PROJECT_NAME']}"]
    assert sh(*volumes).stdout.split(), "no volumes to drop: the runs above made none"
    proc = run_block(doc, tree, env)
    assert proc.returncode == 0, explain(doc, proc)
    assert (tree / "out").stat().st_uid == 1000
    assert sh(*volumes).stdout.split() == []
