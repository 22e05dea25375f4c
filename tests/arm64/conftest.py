"""The arm64 env: the aarch64 offline bundle built as the README says (in a fresh clone) and run
on an emulated aarch64 node (arm64lib.Node). Without qemu-user-static, binfmt-support and the
cross g++ (scripts/bootstrap --arm64), or without root where no binfmt handler is registered,
the tests fail, saying so: the env exists to run them."""
import pytest

from arm64lib import ARCHIVE, BUILD_BLOCK, Node, binfmt, missing_tools
from docblocks import explain, repo_copy, run_block


@pytest.fixture(scope="session")
def node(tmp_path_factory):
    missing = missing_tools()
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run scripts/bootstrap --arm64")
    reason = binfmt()
    if reason:
        pytest.fail(reason)
    return Node(tmp_path_factory.mktemp("node")).make()


@pytest.fixture(scope="session")
def documented_build(tmp_path_factory):
    """The README's arm64 build command, as written, in a fresh clone of this tree."""
    tree = repo_copy(tmp_path_factory.mktemp("clone"))
    return tree, run_block(BUILD_BLOCK, tree, timeout=1800)


@pytest.fixture(scope="session")
def dist(documented_build):
    """The clone's dist/: the aarch64 archive, its .sha256 and the launcher."""
    tree, proc = documented_build
    assert proc.returncode == 0, explain(BUILD_BLOCK, proc)
    return tree / "dist"


@pytest.fixture(scope="session")
def archive(dist):
    return dist / ARCHIVE
