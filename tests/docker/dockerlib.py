"""Helpers of the Docker tests: commands with their output on failure, docker compose on
the repo's compose.yaml in a project of its own."""
import json
import os
import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("XOR_GPU_IMAGE", "xor-gpu")
BUILD_TIMEOUT = 1800
RUN_TIMEOUT = 900


def tail(text, n=6000):
    return text[-n:] if text else ""


def failures(text):
    """pytest's FAILED/ERROR lines in a run's output: a tail alone may miss them."""
    return "\n".join(line for line in text.splitlines() if line.startswith(("FAILED ", "ERROR ")))


def sh(*args, timeout=RUN_TIMEOUT, env=None, check=True, cwd=REPO):
    """Run a command; on failure (when check) fail the test with its output."""
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {proc.returncode}\n"
                    f"failed tests:\n{failures(proc.stdout) or '(none named)'}\n"
                    f"stdout:\n{tail(proc.stdout)}\nstderr:\n{tail(proc.stderr)}")
    return proc


def docker_unavailable():
    """Why Docker cannot be used here, or None when the daemon and compose v2 answer."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed (scripts/docker-host-setup installs it)"
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return f"no Docker daemon answers ({' '.join(info.stderr.split())[:300]}); start one with scripts/dockerd-start"
    return None


class Compose:
    """`docker compose` on the repo's compose.yaml in a project of its own, with ./out
    replaced by a temporary folder writable by the image's user."""

    def __init__(self, project, out):
        self.project = project
        self.out = out
        self.env = {"XOR_GPU_OUT": str(out)}

    def __call__(self, *args, check=True, timeout=RUN_TIMEOUT, env=None):
        return sh("docker", "compose", "--project-directory", REPO, "-f", REPO / "compose.yaml",
                  "-p", self.project, *args, check=check, timeout=timeout, env={**self.env, **(env or {})})

    def run(self, service, *args, check=True, timeout=RUN_TIMEOUT, env=None):
        return self("run", "--rm", "-T", service, *args, check=check, timeout=timeout, env=env)

    def report(self, name="report.json"):
        with open(self.out / name, encoding="utf-8") as f:
            return json.load(f)

    def modules_in_volume(self, service="train"):
        """Compiled module folders in the compiledir held by the service's cache volume
        (Theano keeps one folder per compiled module: tmp*/)."""
        proc = self("run", "--rm", "-T", "--entrypoint", "python", service, "-c",
                    "from xor_gpu.compile_cache import count_compiled_modules as c; print(c())")
        return int(proc.stdout.split()[-1])


def compose_config(*args):
    """`docker compose config` as a dict (JSON), for the given profiles/options."""
    proc = sh("docker", "compose", "--project-directory", REPO, "-f", REPO / "compose.yaml",
              *args, "config", "--format", "json")
    return json.loads(proc.stdout)
