"""A real one-node Slurm for the session (tests/slurm/slurmlib.py), always stopped at the end,
and a submit folder as the documentation asks for: dist/'s two files from a bundle built
like the bundle env builds it, and bundle/slurm/*.sbatch."""
import os
import shutil

import pytest

from bundlelib import REPO, build_archive, runner_beside
from slurmlib import SlurmCluster, missing_programs


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    missing = missing_programs()
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: run scripts/bootstrap --slurm (Debian's munge, slurmctld, "
                    "slurmd and slurm-client)")
    if os.geteuid() != 0:
        pytest.fail("slurmd starts jobs as their user and needs root: run the slurm env as root")
    slurm = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        slurm.start()
        yield slurm
    finally:
        slurm.stop()


@pytest.fixture(scope="session")
def archive(tmp_path_factory):
    return build_archive(tmp_path_factory)


@pytest.fixture(scope="session")
def submit_dir(archive):
    """make(folder): a folder on the cluster holding xor_gpu-bundle.tar.gz, xor_gpu-bundle-run.sh
    and the .sbatch files, as README.md and docs/gpu-validation.md tell users to copy them."""
    def make(folder):
        folder.mkdir(parents=True)
        shutil.copy(archive, folder / "xor_gpu-bundle.tar.gz")
        shutil.copy(runner_beside(archive), folder / "xor_gpu-bundle-run.sh")
        for sbatch in sorted((REPO / "bundle" / "slurm").glob("*.sbatch")):
            shutil.copy(sbatch, folder / sbatch.name)
        return folder
    return make
