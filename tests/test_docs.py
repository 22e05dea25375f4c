"""The documents' shell blocks are tests: each one carries a known marker, and the tox env it
names collects a test that runs it (parametrized with the block's id, e.g. `README.md:21`).

How an env runs its tests is read from tox.ini (the env's `pytest` command line); its test ids
are what `pytest --collect-only` lists with those arguments. A block whose env collects no test
with its id is not run anywhere, and fails here.
"""
import configparser
import shlex
import shutil
import subprocess
import sys

import pytest

from docblocks import ENVS, MARKER, NOT_HERE, REPO, all_shell_blocks, documents

# The bench env is not run by CI (slow and noisy, see benchmarks/README.md); its block runs
# the bench env itself.
NOT_IN_CI = {"bench"}


def tox_envs():
    config = configparser.ConfigParser(interpolation=None)
    config.read(REPO / "tox.ini")
    return config


def pytest_args(config, env):
    """The pytest arguments of a tox env's `commands` (inherited from [testenv] when unset)."""
    section = f"testenv:{env}"
    commands = config.get(section, "commands", fallback=None) or config.get("testenv", "commands")
    argv = shlex.split(commands.strip().splitlines()[0])
    assert argv[0] == "pytest", f"tox env {env} does not run pytest: {commands!r}"
    return [a for a in argv[1:] if a != "{posargs}"]


def collected_ids(env):
    config = tox_envs()
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *pytest_args(config, env)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"collecting the {env} env's tests failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return [line for line in proc.stdout.splitlines() if "::" in line]


def test_the_documents_have_shell_blocks():
    """The extractor finds the blocks (a broken lexer would pass every check below vacuously)."""
    blocks = all_shell_blocks()
    paths = {b.path for b in blocks}
    assert {"README.md", "docs/gpu-validation.md", "docs/reference.md", "benchmarks/README.md"} <= paths, paths
    assert len(blocks) >= 20 and all(b.text.strip() for b in blocks)
    first = blocks[0]
    assert (first.path, first.marker) == ("README.md", "docker")
    assert first.text.splitlines()[-1] == "scripts/bootstrap --docker && docker compose run --rm train"


def test_every_shell_block_has_a_known_marker():
    problems = [f"{b}: {'no marker above the fence' if not b.marker else f'unknown doc-test env {b.marker!r}'}"
                for b in all_shell_blocks() if b.marker not in ENVS + NOT_HERE]
    assert not problems, "\n".join(problems)


def test_every_marker_sits_directly_above_a_shell_block():
    """A marker one line too high, or above an output block, marks nothing."""
    marked = {(b.path, b.lineno - 1) for b in all_shell_blocks()}
    stray = [f"{doc.relative_to(REPO)}:{n}" for doc in documents()
             for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
             if MARKER.match(line) and (str(doc.relative_to(REPO)), n) not in marked]
    assert not stray, f"doc-test markers not directly above a shell block: {stray}"


@pytest.mark.parametrize("env", sorted(set(ENVS) - NOT_IN_CI))
def test_every_block_marked_for_an_env_is_run_by_its_tests(env):
    blocks = [b for b in all_shell_blocks() if b.marker == env]
    if not blocks:
        return  # nothing to run (gpu: its blocks need an NVIDIA GPU and say so)
    ids = collected_ids(env)
    missing = [str(b) for b in blocks if not any(f"[{b}]" in i or f"-{b}]" in i or f"[{b}-" in i for i in ids)]
    assert not missing, f"blocks marked doc-test: {env} that no test of the {env} env runs: {missing}"




def test_every_shell_block_passes_shellcheck():
    """Also the blocks no env here runs (GPU, cluster): a typo there still fails a test."""
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing (scripts/bootstrap installs it)"
    problems = []
    for b in all_shell_blocks():
        proc = subprocess.run([shellcheck, "--shell=bash", "--severity=warning", "-"], input=b.text,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            problems.append(f"{b}:\n{proc.stdout}")
    assert not problems, "\n".join(problems)
