"""The README's pip route, run as written in a fresh virtual environment (made from this
Python's base interpreter, so pip there is plain pip with this host's settings) in a fresh
copy of the tree: install, train on the CPU and OpenCL, parity, check, compare, doctor; then
the comparison of results gathered from elsewhere."""
import json
import shutil
import subprocess
import sys

import pytest

from docblocks import block, explain, repo_copy, run_block, user_path

PIP_ROUTE = block("cpu", "pip install '.[gpu,plot]'")
COMPARE = block("cpu", "xor-gpu compare results/*/summary.json")


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """A fresh clone and a fresh venv on PATH, as a user has them; THEANO_FLAGS unset (tox's
    device flag is not theirs). The compile caches stay tox's: only faster, never different."""
    tree = repo_copy(tmp_path_factory.mktemp("clone"))
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True)
    env = {"PATH": f"{venv}/bin:{user_path()}", "VIRTUAL_ENV": str(venv), "THEANO_FLAGS": ""}
    return tree, env


@pytest.fixture(scope="module")
def pip_route(user):
    tree, env = user
    proc = run_block(PIP_ROUTE, tree, env)
    return tree, proc


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize("doc", [PIP_ROUTE], ids=str)
def test_pip_route_runs_as_written(doc, pip_route):
    tree, proc = pip_route
    assert proc.returncode == 0, explain(doc, proc)
    report = load(tree / "r.json")
    assert report["device"]["active"] == "opencl0:0" and report["converged"] is True
    assert load(tree / "parity.json")["passed"] is True and (tree / "parity.png").stat().st_size > 1000
    summary = load(tree / "check" / "summary.json")
    assert summary["passed"] is True, summary
    assert "converged       yes" in proc.stdout  # the CPU run's table


@pytest.mark.parametrize("doc", [COMPARE], ids=str)
def test_compare_of_gathered_results_runs_as_written(doc, pip_route, user):
    tree, proc = pip_route
    assert proc.returncode == 0, explain(PIP_ROUTE, proc)
    for name in ("node-a", "node-b"):  # two machines' check folders, gathered into results/
        shutil.copytree(tree / "check", tree / "results" / name)
    compared = run_block(doc, tree, user[1])
    assert compared.returncode == 0, explain(doc, compared)
    result = load(tree / "compare.json")
    assert result["passed"] is True and len(result["rows"]) >= 4, result  # each summary's runs
    assert (tree / "compare.png").stat().st_size > 1000
