"""Debian's pygpu made visible to a venv by linking its package folder alone."""
import os
import subprocess
import sys

import pytest

from xor_gpu import system_pygpu
from xor_gpu.errors import DeviceError

HAVE_DEBIAN_PYGPU = os.path.isdir(os.path.join(system_pygpu.SYSTEM_DIR, "pygpu"))


def test_missing_system_package_is_a_clear_error(tmp_path):
    with pytest.raises(DeviceError, match=r"pygpu is not installed .*apt-get install python3-pygpu"):
        system_pygpu.link(system_dir=str(tmp_path), site_dir=str(tmp_path))


@pytest.mark.skipif(not HAVE_DEBIAN_PYGPU, reason="Debian's python3-pygpu is not installed (apt-get install python3-pygpu)")
def test_link_makes_pygpu_importable_and_is_idempotent(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    for _ in range(2):
        message = system_pygpu.link(site_dir=str(site))
    assert os.readlink(site / "pygpu") == os.path.join(system_pygpu.SYSTEM_DIR, "pygpu")
    assert "pygpu 0.7.6" in message
    # Only pygpu came along: this venv's numpy stays the pinned one, not Debian's.
    code = "import sys; sys.path.insert(0, sys.argv[1]); import pygpu, numpy; print(pygpu.__version__, numpy.__version__)"
    out = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0.7.6", "1.23.5"]


@pytest.mark.skipif(not HAVE_DEBIAN_PYGPU, reason="Debian's python3-pygpu is not installed (apt-get install python3-pygpu)")
def test_stale_link_is_replaced(tmp_path):
    (tmp_path / "pygpu").symlink_to(tmp_path / "gone")
    system_pygpu.link(site_dir=str(tmp_path))
    assert os.readlink(tmp_path / "pygpu") == os.path.join(system_pygpu.SYSTEM_DIR, "pygpu")
