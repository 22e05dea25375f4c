#!/usr/bin/env python3
"""Build the offline bundle of xor_gpu for GPU nodes without Docker or internet.

Needs, on the build machine: Debian 12 (bookworm) with apt-get, a Python with pip, and
access to Debian's mirrors and PyPI (no root: apt works in a state folder of the build's own,
with the package lists of the bundle's architecture). Builds for x86-64 (default) or aarch64
(`--arch arm64`, e.g. for Grace Hopper nodes) on any machine. Produces ONE archive (default
dist/xor_gpu-bundle.tar.gz, dist/xor_gpu-bundle-aarch64.tar.gz for arm64), the launcher
beside it (dist/xor_gpu-bundle-run.sh: the same for every architecture, it picks the
archive of the machine it runs on) and a .sha256 file:

  xor_gpu-bundle/
    run.sh          the launcher a GPU node runs (see bundle/run.sh)
    MANIFEST.json   what is inside: the architecture, Debian packages, wheels, git commit, the
                    sha256 of every file
    root/usr/...    CPython 3.11 + headers, OpenBLAS, pygpu, libgpuarray, CLBlast and the
                    OpenCL ICD loader, unpacked from Debian bookworm .debs (dpkg -x), and the
                    wheels of xor_gpu[gpu,plot] and pytest unzipped into root/usr/lib/python3/dist-packages
    tests/          the package's device tests (DEVICE_TESTS), run by `run.sh test --device DEV`

The Python pins come from setup.py only: the xor_gpu wheel is built from the working tree
and pip resolves its requirements. The archive is reproducible: sorted members, fixed
owners, modes and times (SOURCE_DATE_EPOCH), gzip without a name or time.
Standard library only, so that any python3 with pip can run it.
"""
import argparse
import email.parser
import gzip
import hashlib
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
# The exit statuses are the package's own (xor_gpu.errors, standard library only), read from
# the working tree the wheel is built from: the build runs without xor_gpu installed.
sys.path.insert(0, str(REPO))
from xor_gpu.errors import EXIT_INTERRUPTED, EXIT_OK, ConfigError, XorGpuError  # noqa: E402

NAME = "xor_gpu-bundle"
MANIFEST = "MANIFEST.json"  # what is inside, and the checksum of every file (run.sh checks them)


class Arch:
    """An architecture a bundle is built for: Debian's name for it (its packages, --arch) and
    the machine's (`uname -m`: the launcher's and the wheels' name, the multiarch folders)."""

    def __init__(self, debian, machine, debs=()):
        self.debian, self.machine, self.debs = debian, machine, list(debs)

    @property
    def triplet(self):  # Debian's multiarch folder: usr/lib/<triplet>, usr/include/<triplet>
        return f"{self.machine}-linux-gnu"

    @property
    def archive(self):  # the name the launcher looks for on such a machine (bundle/run.sh)
        return f"{NAME}.tar.gz" if self.machine == "x86_64" else f"{NAME}-{self.machine}.tar.gz"

    @property
    def platforms(self):
        return [p + self.machine for p in PLATFORMS]


# Debian bookworm packages, unpacked with dpkg -x (no root needed where the bundle runs).
# libpython3.11-dev: only its headers and the libpython3.11.so link are kept.
# OpenBLAS (with the Fortran runtime it links) is the BLAS the package links Theano's CPU
# modules with (host.default_blas_ldflags); its LAPACK and reference-BLAS copies are dropped.
DEBS = ["python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libpython3.11",
        "libpython3.11-dev", "python3-distutils", "python3-pygpu", "libgpuarray3", "libgpuarray-dev",
        "libclblast1", "ocl-icd-libopencl1", "libopenblas0-pthread", "libgfortran5"]
# x86-64's libgfortran5 also links libquadmath (aarch64 has no __float128 library).
ARCHES = {a.debian: a for a in (Arch("amd64", "x86_64", ["libquadmath0"]), Arch("arm64", "aarch64"))}
# Pure Python wheels and manylinux wheels for CPython 3.11 (suffixed with the machine): none
# needs a glibc newer than 2.28, below the 2.35 that Debian's Python of the bundle needs
# (host_needs, below).
PLATFORMS = ["manylinux2014_", "manylinux_2_17_", "manylinux_2_28_"]
# The C libraries a foreign architecture's staged Python needs for the smoke test under
# emulation (qemu-user): the node's own system, from Debian (smoke_test).
SYSTEM_DEBS = ["libc6", "libstdc++6", "zlib1g", "libbz2-1.0", "liblzma5", "libssl3", "libffi8", "libexpat1"]
# Resolved from setup.py but not unpacked: Theano 1.0.5 imports scipy only optionally (+25 MiB);
# matplotlib imports fontTools only for its PDF and PS backends, and the package writes PNGs
# with Agg (+24 MiB unpacked, 8 MiB in the archive).
LEFT_OUT = ["scipy", "fonttools"]
# Small enough to sit in a cluster's home quota and to copy to a node in seconds.
MAX_MIB = 62
# The device tests tox's gpu env runs (pytest -m device), with what they import, and the pytest
# settings (markers) of pyproject.toml; pytest itself comes pinned from setup.py's test extra.
DEVICE_TESTS = ["conftest.py", "xorlib.py", "cuda_stand_ins.py", "test_device.py", "test_backend.py",
                "test_cuda_libs.py", "test_train_report.py"]
TEST_RUNNER = "pytest"
SOURCE_FILES = ["setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md", "LICENSE"]
DEFAULT_EPOCH = 946684800  # 2000-01-01, outside a git checkout


class BuildError(XorGpuError):
    """A failed step: one line for the user; the work folder is kept for its logs."""


def log(message):
    print(f"[build {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(cmd, what, logfile, **kwargs):
    """Run cmd with its output in logfile; a failure names `what` and the output's last line."""
    try:
        with open(logfile, "w") as f:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, **kwargs)
    except OSError as exc:
        raise BuildError(f"{what}: cannot run {cmd[0]}: {exc.strerror}") from None
    if proc.returncode:
        lines = [line.strip() for line in open(logfile, errors="replace") if line.strip()]
        raise BuildError(f"{what} failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}"
                         f" (full log: {logfile})")


def output(cmd):
    """stdout of a query whose failure is not an error (git outside a checkout)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError:
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def check_host(python):
    with open("/etc/os-release") as f:
        release = dict(line.strip().replace('"', "").split("=", 1) for line in f if "=" in line)
    if release.get("VERSION_CODENAME") != "bookworm":
        raise BuildError("run this on Debian 12 (bookworm): the .debs come from this machine's apt sources "
                         f"(found {release.get('PRETTY_NAME', 'unknown')})")
    for tool in ("apt-get", "dpkg", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise BuildError(f"{tool} not found")
    if not output([python, "-m", "pip", "--version"]):
        raise BuildError(f"{python} has no pip (give a Python that has one with --python)")
    if not (REPO / "setup.py").is_file():
        raise BuildError(f"no setup.py in {REPO}")


def source_date_epoch():
    """SOURCE_DATE_EPOCH, else the last commit's time: the same tree gives the same archive."""
    value = os.environ.get("SOURCE_DATE_EPOCH") or output(["git", "-C", str(REPO), "log", "-1", "--format=%ct"])
    try:
        return int(value) if value else DEFAULT_EPOCH
    except ValueError:
        raise BuildError(f"SOURCE_DATE_EPOCH must be an integer, got {value!r}") from None


class Apt:
    """apt-get with a state of its own in `folder` (package lists, cache, an empty dpkg status)
    for one architecture, from this machine's sources and settings (mirrors, proxies, keys):
    it needs neither root nor `dpkg --add-architecture`, and leaves the machine's apt alone."""

    def __init__(self, folder, arch, logs):
        self.logs = logs
        for sub in ("lists/partial", "cache/archives/partial"):
            (folder / sub).mkdir(parents=True)
        (folder / "status").touch()
        self.apt = ["apt-get", "-q", f"-oAPT::Architecture={arch.debian}", f"-oAPT::Architectures::={arch.debian}",
                    f"-oDir::State::Lists={folder}/lists", f"-oDir::State::status={folder}/status",
                    f"-oDir::Cache={folder}/cache", "-oAPT::Sandbox::User=root"]
        log(f"apt-get update for {arch.debian} (a package state of the build's own)")
        run([*self.apt, "update"], "apt-get update", logs / "apt-update.log")

    def download(self, packages, folder):
        """These packages' .debs (and no others) into folder."""
        folder.mkdir(parents=True, exist_ok=True)
        run([*self.apt, "download", *packages], "apt-get download", self.logs / "apt.log", cwd=folder)
        return sorted(folder.glob("*.deb"))

    def download_with_depends(self, packages, folder):
        """These packages and everything they depend on, as on a machine with nothing installed."""
        (folder / "partial").mkdir(parents=True, exist_ok=True)
        run([*self.apt, f"-oDir::Cache::archives={folder}", "install", "--download-only", "-y",
             "--no-install-recommends", *packages], "apt-get install --download-only", self.logs / "apt-depends.log")
        return sorted(folder.glob("*.deb"))


def fetch_debs(work, root, arch, apt):
    log(f"downloading {len(DEBS) + len(arch.debs)} Debian packages ({arch.debian})")
    debs = apt.download(DEBS + arch.debs, work / "debs")
    lib = root / "usr/lib" / arch.triplet
    for deb in debs:
        if deb.name.startswith("libpython3.11-dev_"):
            dev = work / "dev"
            run(["dpkg", "-x", str(deb), str(dev)], f"dpkg -x {deb.name}", work / "dpkg.log")
            shutil.copytree(dev / "usr/include", root / "usr/include", symlinks=True, dirs_exist_ok=True)
            lib.mkdir(parents=True, exist_ok=True)
            shutil.copy2(dev / "usr/lib" / arch.triplet / "libpython3.11.so", lib, follow_symlinks=False)
        else:
            run(["dpkg", "-x", str(deb), str(root)], f"dpkg -x {deb.name}", work / "dpkg.log")
    # The unversioned names libgpuarray dlopens (normally from -dev packages), and OpenBLAS's
    # soname where the linker and the loader look (Debian's alternatives make this link).
    for name, target in (("libclblast.so", "libclblast.so.1"), ("libOpenCL.so", "libOpenCL.so.1"),
                         ("libopenblas.so.0", "openblas-pthread/libopenblas.so.0")):
        (lib / name).unlink(missing_ok=True)
        (lib / name).symlink_to(target)
    # Links out of the bundle would reach into the node: Debian's stdlib links sitecustomize.py
    # to /etc/python3.11/sitecustomize.py, which would run the node's file (or dangle).
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = pathlib.Path(folder, name)
            if path.is_symlink() and os.readlink(path).startswith("/"):
                log(f"removed absolute link: {path.relative_to(root)}")
                path.unlink()
    site = root / "usr/lib/python3/dist-packages"
    for junk in [*(root / "usr/share" / d for d in ("doc", "doc-base", "man", "lintian", "binfmts")),
                 root / "usr/lib/libgpuarray-static.a", site / "pygpu/tests", *(site / "pygpu").glob("*.c"),
                 *(lib / "openblas-pthread" / name for name in ("libblas.so.3", "liblapack.so.3"))]:
        remove(junk)
    return {deb_field(d, "Package"): deb_field(d, "Version") for d in debs}


def deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True,
                          check=True).stdout.strip()


def remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def fetch_wheels(work, python, extras, arch):
    """xor_gpu from the working tree, Theano from its sdist, the rest from PyPI (for arch)."""
    src, wheels = work / "src", work / "wheels"
    src.mkdir()
    for name in SOURCE_FILES:
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "xor_gpu", src / "xor_gpu", ignore=shutil.ignore_patterns("__pycache__"))
    log(f"building the xor_gpu wheel from {REPO}")
    pip = [python, "-m", "pip"]
    run([*pip, "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)], "building the xor_gpu wheel",
        work / "pip-wheel.log")
    xor_wheel = next(wheels.glob("xor_gpu-*.whl"))
    # Requirements that exist only as an sdist (Theano) are built into wheels first, so that
    # the download below can insist on binary wheels for the target platform.
    sdists = [req.split(";")[0].strip() for req in requirements(xor_wheel) if req.lower().startswith("theano")]
    if not sdists:
        raise BuildError("setup.py does not require theano")
    runner = [req.split(";")[0].strip() for req in requirements(xor_wheel)
              if req.lower().startswith(f"{TEST_RUNNER}=")]
    if not runner:
        raise BuildError(f"setup.py's test extra does not pin {TEST_RUNNER}")
    log(f"building wheels from sdists: {' '.join(sdists)}")
    run([*pip, "wheel", "-q", "--no-deps", "--no-binary=:all:", "-w", str(wheels), *sdists],
        f"building {' '.join(sdists)}", work / "pip-sdist.log")
    log(f"downloading the wheels of xor_gpu[{','.join(extras)}] for CPython 3.11 on {arch.machine}")
    platforms = [arg for p in arch.platforms for arg in ("--platform", p)]
    run([*pip, "download", "-q", "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
         "--abi", "cp311", *platforms, "--find-links", str(wheels), "-d", str(wheels),
         f"xor_gpu[{','.join(extras)}] @ {xor_wheel.as_uri()}", *runner], "pip download", work / "pip-download.log")
    return sorted(wheels.glob("*.whl"))


def requirements(wheel):
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(z.read(meta).decode()).get_all("Requires-Dist") or []


def dist_name(wheel):
    return wheel.name.split("-")[0].lower()


def unpack_wheels(wheels, site):
    """Unzip the wheels into site (Debian strips ensurepip; unzipping is also the fastest)."""
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            for info in z.infolist():
                parts = info.filename.split("/")
                if parts[0].endswith(".data"):  # only purelib/platlib; scripts and data are not needed
                    if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                        continue
                    parts = parts[2:]
                if info.is_dir() or "__pycache__" in parts:
                    continue
                target = site.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    # Test suites of the dependencies are not needed at run time (theano.tests is imported by Theano).
    for tests in [*site.glob("numpy/*/tests"), site / "numpy/tests", site / "matplotlib/tests",
                  *site.glob("mpl_toolkits/*/tests"), *site.glob("theano/*/tests"), *site.glob("theano/*/*/tests")]:
        remove(tests)


def checksums(stage):
    """{path in the bundle: sha256} of every file but MANIFEST.json, a link by the file it leads
    to: run.sh checks the unpacked tree against them once (sha256sum -c), and the interpreter on
    every run. Names are plain ASCII: JSON writes them as they are, and run.sh reads them so."""
    sums = {}
    top = stage.resolve()
    for folder, dirs, files in os.walk(stage):
        for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(folder, d)))]:
            path = pathlib.Path(folder, name)
            rel = path.relative_to(stage).as_posix()
            if rel == MANIFEST:
                continue
            if not (rel.isascii() and rel.isprintable()) or set(rel) & set('"\\'):
                raise BuildError(f"{rel}: a file name run.sh cannot check (plain ASCII, no quote or backslash)")
            target = path.resolve()
            if not target.is_file() or not target.is_relative_to(top):
                raise BuildError(f"{rel}: a link to no file of the bundle")
            sums[rel] = hashlib.sha256(target.read_bytes()).hexdigest()
    return dict(sorted(sums.items()))


def manifest(epoch, extras, debian_packages, wheels, arch, files):
    commit = output(["git", "-C", str(REPO), "rev-parse", "-q", "--verify", "HEAD"]) or "none"
    dirty = output(["git", "-C", str(REPO), "status", "--porcelain"])
    return {
        "schema": "xor_gpu.bundle/1",
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)),
        "git_commit": commit + ("-dirty" if dirty else ""),
        "python": "3.11 (Debian bookworm)",
        "architecture": arch.debian,
        "machine": arch.machine,  # `uname -m` of the nodes it runs on: the launcher refuses others
        "extras": extras,
        "debian_packages": debian_packages,
        "wheels": [w.name for w in wheels],
        "left_out": LEFT_OUT,
        "host_needs": [f"{arch.machine} Linux, glibc >= 2.35", f"g++ compiling for {arch.machine}",
                       "NVIDIA driver + NVRTC/cuBLAS (CUDA toolkit or NVIDIA wheels) for cuda",
                       "an OpenCL ICD (e.g. PoCL) for openclP:D"],
        "files": files,
    }


def smoke_test(work, root, extras, arch, apt):
    """The staged Python imports the stack from the bundle alone (nothing of this machine's).
    A foreign architecture's runs under emulation (qemu-user, where its binfmt handler is
    registered), with Debian's C libraries of that architecture as the node's system."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "LD_LIBRARY_PATH": f"{root}/usr/lib/{arch.triplet}:{root}/usr/lib"}
    if arch.machine != platform.machine():
        if not emulates(arch):
            return log(f"smoke test skipped: this {platform.machine()} machine cannot run {arch.machine} programs "
                       f"(qemu-user-static, with its binfmt handler qemu-{arch.machine} enabled, would)")
        env["QEMU_LD_PREFIX"] = str(system_root(work / "system", apt))
    log("smoke test of the staged Python")
    modules = ["numpy", "pygpu", "mako", "pkg_resources", "xor_gpu.cli", "xor_gpu.launch", TEST_RUNNER]
    modules += ["matplotlib"] if "plot" in extras else []
    code = ("import sys, importlib, ctypes; root = sys.argv[1]\n"
            f"for name in {modules!r}:\n"
            "    m = importlib.import_module(name)\n"
            "    assert m.__file__.startswith(root), (name, m.__file__)\n"
            "ctypes.CDLL('libopenblas.so.0').openblas_get_config\n"
            "maps = open('/proc/self/maps').read()\n"
            f"assert f'{{root}}/usr/lib/{arch.triplet}/openblas-pthread/' in maps, 'OpenBLAS not from the bundle'\n")
    run([str(root / "usr/bin/python3.11"), "-c", code, str(root)], "the smoke test of the staged Python",
        work / "smoke.log", env=env, cwd=work)


def emulates(arch):
    """Whether this machine runs arch's programs through qemu-user (a binfmt_misc handler)."""
    try:
        return pathlib.Path(f"/proc/sys/fs/binfmt_misc/qemu-{arch.machine}").read_text().startswith("enabled")
    except OSError:
        return False


def system_root(folder, apt):
    """A folder holding Debian's C libraries of apt's architecture (SYSTEM_DEBS and what they
    depend on), unpacked: the system of a node, as qemu-user's QEMU_LD_PREFIX."""
    for deb in apt.download_with_depends(SYSTEM_DEBS, folder.with_name(folder.name + "-debs")):
        run(["dpkg", "-x", str(deb), str(folder)], f"dpkg -x {deb.name}", folder.with_name("dpkg-system.log"))
    return folder


def write_archive(parent, out, epoch):
    """parent/NAME as a reproducible tar.gz at out (atomically): members sorted by name, owner
    0:0 without names, mtime epoch, modes 0755/0644, gzip without a file name or time."""
    tmp = out.with_name(out.name + ".tmp")
    # Level 6: a quarter of level 9's time for 1% more size.
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(path, arcname):
            info = tar.gettarinfo(str(path), arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = epoch
            if not info.issym():
                info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            if info.isdir():
                for child in sorted(os.listdir(path)):
                    add(path / child, f"{arcname}/{child}")

        add(parent / NAME, NAME)
    os.replace(tmp, out)


def write_beside(out):
    """The launcher and the checksum beside the archive, each written atomically. One launcher
    serves every architecture (it takes the archive named for its machine: Arch.archive), so
    the bundles of two architectures share a folder and a Slurm job."""
    runner = out.with_name(f"{NAME}-run.sh")
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    for path, data, mode in ((runner, (HERE / "run.sh").read_bytes(), 0o755),
                             (out.with_name(out.name + ".sha256"), f"{digest}  {out.name}\n".encode(), 0o644)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.chmod(mode)
        os.replace(tmp, path)
    return runner


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        print(f"build.py: error: {message}", file=sys.stderr)
        sys.exit(ConfigError.exit_status)


def parse_args(argv):
    p = _Parser(prog="build.py", description="Build the offline bundle of xor_gpu (one reproducible tar.gz).",
                epilog="Environment: SOURCE_DATE_EPOCH (timestamps in the archive; default: the last commit's time).")
    p.add_argument("--arch", choices=sorted(ARCHES), default="amd64",
                   help="the nodes' architecture, by Debian's name: amd64 (x86-64, default) or arm64 (aarch64, "
                        "e.g. Grace Hopper)")
    p.add_argument("--out", type=pathlib.Path,
                   help="archive to write (default: <repo>/dist/xor_gpu-bundle.tar.gz, for arm64 "
                        "<repo>/dist/xor_gpu-bundle-aarch64.tar.gz: the names the launcher looks for)")
    p.add_argument("--python", default=os.environ.get("PYTHON", "python3"),
                   help="Python with pip used to build and download the wheels (default: python3)")
    p.add_argument("--no-plot", action="store_true",
                   help="leave out matplotlib and its dependencies (about -17 MiB): no PNGs are written; "
                        "for a node that needs the room for more, e.g. NVRTC 12 beside the bundle")
    p.add_argument("--keep-work", action="store_true", help="keep the staging folder and print its path")
    args = p.parse_args(argv)
    args.arch = ARCHES[args.arch]
    args.out = args.out or REPO / "dist" / args.arch.archive
    if not args.out.name.endswith(".tar.gz"):
        p.error(f"--out must name a .tar.gz file, got {args.out}")
    args.out = args.out.resolve()
    return args


def build(args, work, epoch):
    started = time.monotonic()
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)  # for pip's wheel builds too
    extras = ["gpu"] + ([] if args.no_plot else ["plot"])
    stage = work / "stage" / NAME
    root = stage / "root"
    root.mkdir(parents=True)
    arch = args.arch
    apt = Apt(work / "apt", arch, work)
    debian_packages = fetch_debs(work, root, arch, apt)
    wheels = [w for w in fetch_wheels(work, args.python, extras, arch) if dist_name(w) not in LEFT_OUT]
    log(f"unpacking {len(wheels)} wheels into root/usr/lib/python3/dist-packages (left out: {', '.join(LEFT_OUT)})")
    unpack_wheels(wheels, root / "usr/lib/python3/dist-packages")
    shutil.copy2(HERE / "run.sh", stage / "run.sh")
    (stage / "run.sh").chmod(0o755)
    if (REPO / "docs/gpu-validation.md").exists():
        shutil.copy2(REPO / "docs/gpu-validation.md", stage)
    (stage / "tests").mkdir()
    for name in DEVICE_TESTS:
        shutil.copy2(REPO / "tests" / name, stage / "tests" / name)
    shutil.copy2(REPO / "pyproject.toml", stage / "tests" / "pyproject.toml")
    (stage / MANIFEST).write_text(json.dumps(manifest(epoch, extras, debian_packages, wheels, arch, checksums(stage)),
                                             indent=2, sort_keys=True) + "\n")
    smoke_test(work, root, extras, arch, apt)
    log(f"writing {args.out}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_archive(stage.parent, args.out, epoch)
    runner = write_beside(args.out)
    mib = args.out.stat().st_size / 2**20
    log(f"done in {time.monotonic() - started:.0f} s: {args.out} ({mib:.1f} MiB), runner {runner}")
    return mib


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        check_host(args.python)
        epoch = source_date_epoch()
    except BuildError as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        return exc.exit_status
    work = pathlib.Path(tempfile.mkdtemp(prefix="xor_gpu-bundle-build."))
    try:
        mib = build(args, work, epoch)
    except (BuildError, OSError, subprocess.CalledProcessError) as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        log(f"staging and logs kept in {work}")
        return BuildError.exit_status
    except KeyboardInterrupt:
        shutil.rmtree(work, ignore_errors=True)
        print("build.py: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.keep_work:
        log(f"staging kept in {work}")
    else:
        shutil.rmtree(work)
    if mib > MAX_MIB:
        print(f"build.py: error: the archive is {mib:.1f} MiB, over the {MAX_MIB} MiB budget (a size a cluster's "
              "home quota and a copy to each node handle easily): leave something out, e.g. --no-plot", file=sys.stderr)
        return BuildError.exit_status
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
