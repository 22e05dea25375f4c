"""Debian's pygpu inside a virtual environment, by linking only its package folder.

pygpu is not on PyPI. Debian bookworm's python3-pygpu 0.7.6 is built for CPython 3.11
against numpy's C-API version 0x10, which numpy 1.23.5 also uses, so its package folder
works in a venv pinned to numpy 1.23.5. Adding all of Debian's dist-packages instead
would bring Debian's numpy 1.24, which breaks Theano 1.0.5.
"""
import os
import subprocess
import sys
import sysconfig

from xor_gpu.errors import DeviceError

SYSTEM_DIR = "/usr/lib/python3/dist-packages"
INSTALL_HINT = "apt-get install python3-pygpu libgpuarray-dev (Debian 12 / Ubuntu)"


def system_pygpu(system_dir=SYSTEM_DIR):
    path = os.path.join(system_dir, "pygpu")
    if not os.path.isfile(os.path.join(path, "__init__.py")):
        raise DeviceError(f"Debian's pygpu is not installed ({path} missing): {INSTALL_HINT}")
    return path


def link(system_dir=SYSTEM_DIR, site_dir=None):
    """Symlink Debian's pygpu into this environment's site-packages and prove it imports."""
    if sys.version_info[:2] != (3, 11):
        raise DeviceError(f"Debian bookworm's pygpu is built for Python 3.11, this is {sys.version.split()[0]}")
    if site_dir is None:
        if sys.prefix == sys.base_prefix:
            raise DeviceError("link-pygpu changes site-packages: run it inside a virtual environment")
        site_dir = sysconfig.get_paths()["purelib"]
    source = system_pygpu(system_dir)
    target = os.path.join(site_dir, "pygpu")
    if os.path.islink(target) and os.readlink(target) != source:
        os.unlink(target)  # a stale link, e.g. to a removed folder
    if not os.path.lexists(target):
        tmp = f"{target}.tmp{os.getpid()}"
        os.symlink(source, tmp)
        os.replace(tmp, target)
    check = "import sys; sys.path.insert(0, sys.argv[1]); import pygpu; print(pygpu.__version__)"
    proc = subprocess.run([sys.executable, "-c", check, site_dir], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise DeviceError(f"pygpu linked at {target} but does not import: {last}")
    return f"pygpu {proc.stdout.strip()} from {source} linked at {target}"
