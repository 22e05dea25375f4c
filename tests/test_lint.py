"""Every shell script in the source tree passes shellcheck, the GitHub workflows pass
actionlint, and the Python passes ruff (the rules pyproject.toml selects). The scripts are
found by extension and shebang, so a new one is checked without being listed anywhere. A
missing tool is a failure that says how to install it.
"""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# Not the project's own sources: virtualenvs, tox envs, build outputs, caches.
SKIP_DIRS = {".git", ".tox", "dist", "build", "__pycache__", ".pytest_cache", "node_modules"}
SHELL_SUFFIXES = {".sh", ".bash", ".sbatch"}
SHEBANG = re.compile(rb"#!\s*\S*/(?:env\s+(?:-\S+\s+)*)?(?:bash|sh|dash|ksh)(?:\s|$)")
# Scripts users run; if the finder misses any of them it is broken.
KNOWN_SCRIPTS = {
    ".ci/run",
    "scripts/bootstrap", "scripts/docker-base-image", "scripts/docker-build",
    "scripts/docker-host-setup", "scripts/docker-lock", "scripts/dockerd-start",
    "scripts/dockerd-stop",
    "bundle/run.sh",
    "bundle/slurm/xor_gpu_check.sbatch", "bundle/slurm/xor_gpu_check_array.sbatch",
    "bundle/slurm/xor_gpu_compare.sbatch",
}


def _skipped(dirname):
    return dirname in SKIP_DIRS or dirname.startswith(".venv") or dirname.endswith(".egg-info")


def _is_shell(path):
    if path.suffix in SHELL_SUFFIXES:
        return True
    with open(path, "rb") as f:
        return bool(SHEBANG.match(f.readline(256)))


def shell_scripts(root):
    """Repo-relative paths (POSIX) of the shell scripts under root, sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not _skipped(d)]
        for name in files:
            path = pathlib.Path(folder, name)
            if path.is_file() and not path.is_symlink() and _is_shell(path):
                found.append(path.relative_to(root).as_posix())
    return sorted(found)


def tool(name, install):
    """The tool's path; also looks beside this Python (a venv whose bin is not on PATH)."""
    path = shutil.which(name, path=os.pathsep.join([os.path.dirname(sys.executable),
                                                    os.environ.get("PATH", "")]))
    if path is None:
        pytest.fail(f"{name} is not installed: {install}")
    return path


def test_finder_tells_shell_scripts_from_the_rest(tmp_path):
    scripts = {
        "a/env-bash": "#!/usr/bin/env bash\n",
        "a/bin-sh": "#!/bin/sh\nset -e\n",
        "a/env-flag": "#!/usr/bin/env -S bash -e\n",
        "b/no-shebang.sh": "echo hi\n",
        "b/job.sbatch": "#!/bin/bash\n#SBATCH --gres=gpu:1\n",
    }
    others = {
        "a/tool.py": "#!/usr/bin/env python3\n",
        "a/shell.txt": "bash is mentioned here\n#!/bin/sh on line 2\n",
        "a/bashful": "#!/usr/bin/env bashful\n",
        ".venv-x/bin/activate.sh": "#!/bin/sh\n",
        ".tox/cpu/run": "#!/bin/bash\n",
        "dist/xor_gpu-bundle-run.sh": "#!/bin/bash\n",
        "build/x.sh": "#!/bin/bash\n",
    }
    for rel, text in {**scripts, **others}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / "a" / "blob").write_bytes(b"\x7fELF\x00\x01" * 100)
    assert shell_scripts(tmp_path) == sorted(scripts)


def test_finder_finds_the_known_scripts():
    found = set(shell_scripts(REPO))
    assert KNOWN_SCRIPTS <= found, f"not found: {sorted(KNOWN_SCRIPTS - found)}"


@pytest.mark.parametrize("script", shell_scripts(REPO))
def test_shell_script_passes_shellcheck(script):
    shellcheck = tool("shellcheck", "apt-get install shellcheck (scripts/bootstrap installs it)")
    proc = subprocess.run([shellcheck, "--severity=style", "--external-sources", script],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflows_pass_actionlint():
    actionlint = tool("actionlint", "pip install '.[lint]' (the tox envs install it)")
    workflows = sorted(p.relative_to(REPO).as_posix() for p in (REPO / ".github" / "workflows").glob("*.y*ml"))
    assert workflows, "no workflow in .github/workflows"
    # Config and files named explicitly: found this way also outside a git checkout.
    # actionlint runs shellcheck over every `run:` block too when shellcheck is on PATH.
    proc = subprocess.run([actionlint, "-no-color", "-config-file", ".github/actionlint.yaml", *workflows],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_python_passes_ruff():
    ruff = tool("ruff", "pip install '.[lint]' (the tox envs install it)")
    proc = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", "."], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_finds_a_blind_except_and_an_unused_import(tmp_path):
    """The rules the noqa comments serve are in force: without its noqa, a bare `except
    Exception` is found, and so is an unused import."""
    ruff = tool("ruff", "pip install '.[lint]' (the tox envs install it)")
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    (tmp_path / "bad.py").write_text("import os\n\ntry:\n    pass\nexcept Exception:\n    pass\n")
    proc = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", "."], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "F401" in proc.stdout and "BLE001" in proc.stdout, proc.stdout
