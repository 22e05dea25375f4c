"""The offline bundle as the bundle and slurm envs use it: built once per test session with
bundle/build.py, as CI builds it, or taken from XOR_GPU_BUNDLE (a prebuilt archive).

The build needs Debian bookworm's apt (no root: it keeps a package state of its own) and PyPI.
"""
import contextlib
import os
import pathlib
import re
import runpy
import subprocess
import sys
from unittest import mock

REPO = pathlib.Path(__file__).resolve().parents[1]
BUILD = REPO / "bundle" / "build.py"
RUN = REPO / "bundle" / "run.sh"


def tail(text, n=6000):
    return text[-n:]


def prebuilt():
    """The archive XOR_GPU_BUNDLE names (checked to exist), or None: build one."""
    given = os.environ.get("XOR_GPU_BUNDLE")
    if not given:
        return None
    path = pathlib.Path(given).resolve()
    assert path.is_file(), f"XOR_GPU_BUNDLE={given}: no such file"
    return path


def build_archive(tmp_path_factory):
    """Path of xor_gpu-bundle.tar.gz; a fresh build also leaves the launcher
    (xor_gpu-bundle-run.sh) and the .sha256 beside it."""
    path = prebuilt()
    if path:
        return path
    path = tmp_path_factory.mktemp("bundle-build") / "xor_gpu-bundle.tar.gz"
    proc = subprocess.run([sys.executable, str(BUILD), "--out", str(path)], capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, f"bundle/build.py failed:\n{tail(proc.stderr)}"
    return path


def runner_beside(archive):
    """The launcher that goes with the archive: the one the build wrote beside it, else the
    source tree's (a prebuilt archive given alone)."""
    built = archive.with_name("xor_gpu-bundle-run.sh")
    return built if built.exists() else RUN


def setup_py_pins(extras):
    """{name: version} of what setup.py pins, with the given extras, read from setup.py itself
    (names normalised: lower case, runs of - _ . as one _)."""
    with contextlib.chdir(REPO), mock.patch("setuptools.setup") as setup:
        runpy.run_path(str(REPO / "setup.py"))
    kwargs = setup.call_args.kwargs
    reqs = kwargs["install_requires"] + [r for e in extras for r in kwargs["extras_require"][e]]
    return {re.sub(r"[-_.]+", "_", name).lower(): version for name, version in (r.split("==") for r in reqs)}
