"""`.ci/run` is the README's test command, verbatim, and sets nothing a README user lacks.

The Quick start's test command is the block marked `doc-test: cpu` that runs tox: CI runs it
through .ci/run (so the cpu env, one of the envs it runs, holds this test of it)."""
import re

import pytest

from docblocks import REPO, block
from xorlib import strict

TEST_COMMAND = block("cpu", "scripts/bootstrap --docker --slurm --arm64 && .venv/bin/tox")
# .ci/run's own lines besides the command: strict mode, the repo root, timing and stopping the
# dockerd it started.
HARNESS = {"set -euo pipefail", 'cd "$(dirname "$0")/.."', "SECONDS=0",
           'stop_dockerd() { scripts/dockerd-stop || true; echo ".ci/run: ${SECONDS} s in all"; }',
           "trap stop_dockerd EXIT"}


def commands(text):
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("doc", [TEST_COMMAND], ids=str)
def test_ci_runs_the_readme_test_command(doc):
    readme = commands(doc.text)
    assert len(readme) == 1, f"{doc}: one command line expected, got {readme}"
    ci = commands((REPO / ".ci" / "run").read_text(encoding="utf-8"))
    extra = [line for line in ci if line not in HARNESS]
    assert extra == readme, f".ci/run runs {extra}, the README ({doc}) says {readme}"


def test_ci_sets_nothing_a_readme_user_lacks():
    ci = commands((REPO / ".ci" / "run").read_text(encoding="utf-8"))
    settings = [line for line in ci if re.match(r"(export\s+|env\s+|declare\s+-x\s+)?[A-Za-z_][A-Za-z0-9_]*=", line)
                and line != "SECONDS=0"]
    assert not settings, f".ci/run sets {settings}; a README user has none of them"


@pytest.mark.parametrize("env, expected", [({}, False), ({"CI": "true"}, True),
                                           ({"CI": "true", "XOR_GPU_REQUIRE_DOCKER": "0"}, False),
                                           ({"XOR_GPU_REQUIRE_DOCKER": "1"}, True), ({"CI": "false"}, False)])
def test_ci_makes_docker_and_engine_skips_failures(monkeypatch, env, expected):
    """What .ci/run used to export now follows CI=true, which CI systems set; the explicit
    variable still wins either way."""
    for name in ("CI", "XOR_GPU_REQUIRE_DOCKER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert strict("XOR_GPU_REQUIRE_DOCKER") is expected
