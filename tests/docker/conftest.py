"""pytest driving the real Docker engine and the real `docker compose` v2 (in the style of
jupyter/docker-stacks' tests): the images are built with scripts/docker-build and every
compose service runs for real.

Tests that need Docker skip, saying why, only when no Docker daemon answers; with
XOR_GPU_REQUIRE_DOCKER=1, or in CI (CI=true) unless XOR_GPU_REQUIRE_DOCKER=0, that is a
failure instead. Each test session uses its
own compose project (own named volumes), removed at the end.
"""
import os
import uuid

import pytest

from dockerlib import BUILD_TIMEOUT, IMAGE, REPO, Compose, docker_unavailable, sh, tail
from xorlib import strict


@pytest.fixture(scope="session")
def docker():
    """Gate for every test that needs the engine: skip, or fail under XOR_GPU_REQUIRE_DOCKER=1 / CI."""
    reason = docker_unavailable()
    if reason:
        if strict("XOR_GPU_REQUIRE_DOCKER"):
            pytest.fail(f"{reason}, and XOR_GPU_REQUIRE_DOCKER=1 (or CI) requires Docker")
        pytest.skip(f"{reason}; set XOR_GPU_REQUIRE_DOCKER=1 (CI does) to make this a failure")
    version = sh("docker", "compose", "version", "--short", check=False)
    if version.returncode != 0 or not version.stdout.strip().lstrip("v").startswith("2."):
        pytest.fail("a Docker daemon answers but `docker compose` v2 is missing "
                    f"({tail(version.stderr or version.stdout, 300).strip()}); run scripts/docker-host-setup")
    return version.stdout.strip()


@pytest.fixture(scope="session")
def images(docker):
    """Build xor-gpu:cpu and xor-gpu:cuda (BuildKit cache makes a rebuild of an unchanged
    tree take seconds). Returns {target: image name}."""
    sh(REPO / "scripts" / "docker-build", "all", timeout=BUILD_TIMEOUT)
    return {"cpu": f"{IMAGE}:cpu", "cuda": f"{IMAGE}:cuda"}


@pytest.fixture(scope="session")
def compose(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    if os.geteuid() == 0:
        os.chown(out, 1000, 1000)  # the image's user
    else:
        out.chmod(0o777)
    c = Compose(f"xor-gpu-test-{uuid.uuid4().hex[:8]}", out)
    yield c
    c("--profile", "gpu", "down", "--volumes", "--remove-orphans", check=False)
