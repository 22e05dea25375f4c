"""An aarch64 machine emulated on this one, for the arm64 env: a Grace Hopper node without its
GPU, as far as the offline bundle can tell.

- qemu-user (Debian's qemu-user-static) runs aarch64 programs through binfmt_misc: `binfmt()`
  mounts binfmt_misc and enables the handler Debian's package ships (root), where it is not.
- The node's own system (the tools the launcher runs and the C libraries) is Debian's arm64
  packages unpacked into a folder, fetched with bundle/build.py's own apt (Apt: a state of
  its own, no `dpkg --add-architecture`); qemu finds them through QEMU_LD_PREFIX, which also
  makes every file of that folder the node's (its /bin/bash).
- Its `g++` and `gcc` are Debian's cross compilers, run natively (a node runs its own g++;
  emulated, cc1plus would take minutes per module): they compile for aarch64, so the
  launcher's check that g++ compiles for this machine holds, as on the node.

`uname -m` says aarch64 in every emulated process: the launcher (run with the node's bash)
and the bundle's Python see the node's architecture.
"""
import importlib.util
import os
import pathlib
import shutil
import subprocess

from docblocks import block

REPO = pathlib.Path(__file__).resolve().parents[2]
MACHINE = "aarch64"
ARCHIVE = f"xor_gpu-bundle-{MACHINE}.tar.gz"
BUILD_BLOCK = block("arm64", "python3 bundle/build.py --arch arm64")  # the README's build command
REFERENCE_BLOCK = block("arm64", "bash dist/xor_gpu-bundle-run.sh train")  # docs/reference.md's regeneration
HANDLER = pathlib.Path("/proc/sys/fs/binfmt_misc") / f"qemu-{MACHINE}"
# The node's userland (what the launcher runs) beside the C libraries the bundle's Python needs
# (build.SYSTEM_DEBS).
USERLAND = ["bash", "coreutils", "tar", "gzip", "sed", "grep", "diffutils", "findutils"]
CROSS = {"g++": "aarch64-linux-gnu-g++", "gcc": "aarch64-linux-gnu-gcc"}
# Debian's packages that make this machine run the env: bootstrap --arm64 installs them.
PACKAGES = ("qemu-user-static", "binfmt-support", "g++-aarch64-linux-gnu")


def load_build():
    """bundle/build.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("bundle_build", REPO / "bundle" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def missing_tools():
    return [p for p, tool in zip(PACKAGES, ("qemu-aarch64-static", "update-binfmts", CROSS["g++"]))
            if not shutil.which(tool)]


def binfmt():
    """None once aarch64 programs run here, else why they cannot (one line)."""
    if HANDLER.exists() and HANDLER.read_text().startswith("enabled"):
        return None
    if os.geteuid() != 0:
        return (f"binfmt_misc has no enabled {HANDLER.name} handler, and registering one needs root: run the "
                f"env as root or `update-binfmts --enable {HANDLER.name}` as root")
    if not (HANDLER.parent / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(HANDLER.parent)], check=True)
    subprocess.run(["update-binfmts", "--enable", HANDLER.name], check=True, capture_output=True)
    return None if HANDLER.read_text().startswith("enabled") else f"update-binfmts did not enable {HANDLER.name}"


class Node:
    """The emulated aarch64 machine, in `folder`: its system in root/, its compilers in cross/."""

    def __init__(self, folder):
        self.folder, self.root, self.cross = folder, folder / "root", folder / "cross"

    def make(self):
        build = load_build()
        apt = build.Apt(self.folder / "apt", build.ARCHES["arm64"], self.folder)
        debs = apt.download_with_depends(build.SYSTEM_DEBS + USERLAND, self.folder / "debs")
        for deb in debs:
            subprocess.run(["dpkg", "-x", str(deb), str(self.root)], check=True)
        # Empty top folders of the packages would hide the real ones from emulated programs
        # (qemu looks under QEMU_LD_PREFIX first): /tmp, /proc, /home, ...
        for top in self.root.iterdir():
            if top.is_dir() and not top.is_symlink() and not any(top.iterdir()):
                top.rmdir()
        self.cross.mkdir()
        for name, cross in CROSS.items():
            (self.cross / name).write_text(f'#!/bin/sh\nexec {shutil.which(cross)} "$@"\n')
            (self.cross / name).chmod(0o755)
        return self

    @property
    def bash(self):
        return str(self.root / "bin" / "bash")

    def env(self, home, **extra):
        """A login environment on the node: its tools on PATH (the cross compilers first)."""
        return {"PATH": f"{self.cross}:{self.root}/usr/bin:{self.root}/bin", "HOME": str(home),
                "QEMU_LD_PREFIX": str(self.root), "LANG": "C.UTF-8", **extra}
