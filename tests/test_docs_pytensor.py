"""The README's PyTensor set-up, run as written: a new venv at ~/xor-pytensor (HOME is a
temporary folder) with tox.ini's pins, xor_gpu in it without Theano's pins, then runs of the
engines from the Theano side, whose xor-gpu is the cpu env's (a Theano venv, as the user's)."""
import os
import pathlib
import subprocess

import pytest

from docblocks import block, explain, repo_copy, run_block, user_path

pytestmark = pytest.mark.engines

SETUP = block("pytensor", "python3.11 -m venv ~/xor-pytensor")


@pytest.mark.parametrize("doc", [SETUP], ids=str)
def test_pytensor_setup_runs_as_written(doc, tmp_path):
    theano_bin = pathlib.Path(os.environ["XOR_GPU_THEANO_PYTHON"]).parent
    assert (theano_bin / "xor-gpu").exists(), f"no Theano venv at {theano_bin}: run tox -e cpu first"
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": f"{theano_bin}:{user_path()}",
           # downloads are cached where the user's pip keeps them, not in the throwaway HOME
           "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", os.path.expanduser("~/.cache/pip"))}
    proc = run_block(doc, repo_copy(tmp_path / "clone"), env)
    assert proc.returncode == 0, explain(doc, proc)
    python = home / "xor-pytensor" / "bin" / "python"
    versions = subprocess.run([python, "-c", "import numpy, pytensor, xor_gpu; print(numpy.__version__, pytensor.__version__)"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert versions == ["2.4.6", "3.0.7"]
