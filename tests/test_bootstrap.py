"""scripts/bootstrap is Debian 12 only: on any other system it stops before it looks at or
installs anything, with one line (exit 2) naming the system and the routes that bring their own
Debian 12, each of them a command the README shows.

Each system is a small root of its own, entered with chroot (as root, or as root of a user
namespace): that system's /etc/os-release (or none), bash and the few tools bootstrap runs
copied from this host with their libraries, the repository's scripts/, and stand-ins, first on
PATH, that record every call of what installs (apt-get, dpkg, pip, python3, sudo, ...) and a
getconf that answers with that system's glibc. bootstrap reads the os-release exactly as on
such a host, nothing of this host is within its reach, and whatever it runs is recorded. A
Debian 12 root shows that the same stand-ins record what bootstrap installs there.
"""
import os
import pathlib
import re
import shutil
import stat
import subprocess

import pytest

from docblocks import all_shell_blocks

REPO = pathlib.Path(__file__).resolve().parents[1]
TOOLS = ("bash", "env", "dirname", "sed", "sort", "id", "grep")  # copied from this host
RECORDED = ("apt-get", "apt", "dpkg", "dpkg-query", "pip", "pip3", "python3", "python3.11", "sudo", "docker",
            "curl", "wget")
CALLS = "/calls"  # in the root: one line per recorded call
STAND_INS = "/stand-ins"
REAL = "real"  # the glibc of this host's getconf and libc, copied into the root

ROUTES = ("the image (Docker, compose v2): `docker compose run --rm train`, `docker compose run --rm test`, "
          "`docker compose --profile gpu run --rm test-gpu`; ")
BUNDLE = "the offline bundle (x86-64): `bash xor_gpu-bundle-run.sh test --device cuda`"
NO_BUNDLE = "not the offline bundle (it needs glibc >= 2.35)"
HOST_GLIBC = subprocess.run(["getconf", "GNU_LIBC_VERSION"], capture_output=True, text=True).stdout.split()[-1]
# name: /etc/os-release (None: there is none), the glibc its getconf tells (REAL: this host's
# getconf and libc), then what the line must say: the system's name, its glibc, the bundle or not
SYSTEMS = {
    "ubuntu-22.04": ('PRETTY_NAME="Ubuntu 22.04.5 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n'
                     'VERSION="22.04.5 LTS (Jammy Jellyfish)"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\n',
                     "2.35", "Ubuntu 22.04.5 LTS", "2.35", BUNDLE),
    "ubuntu-24.04": ('PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\n'
                     'VERSION="24.04.1 LTS (Noble Numbat)"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n',
                     "2.39", "Ubuntu 24.04.1 LTS", "2.39", BUNDLE),
    "rocky-9": ('NAME="Rocky Linux"\nVERSION="9.4 (Blue Onyx)"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
                'VERSION_ID="9.4"\nPLATFORM_ID="platform:el9"\nPRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"\n',
                "2.34", "Rocky Linux 9.4 (Blue Onyx)", "2.34", NO_BUNDLE),
    "debian-11": ('PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nNAME="Debian GNU/Linux"\nVERSION_ID="11"\n'
                  'VERSION="11 (bullseye)"\nVERSION_CODENAME=bullseye\nID=debian\n',
                  "2.31", "Debian GNU/Linux 11 (bullseye)", "2.31", NO_BUNDLE),
    "no-os-release": (None, REAL, "unknown (no os-release)", HOST_GLIBC, BUNDLE),  # the host: Debian 12, 2.36
}
DEBIAN_12 = ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
             'VERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n')


def expected_line(name, glibc, bundle):
    return (f"bootstrap: error: this system is {name} (glibc {glibc}), and bootstrap sets up Debian 12 only "
            f"(Debian's python3.11 and pygpu, with apt); routes that bring their own Debian 12: {ROUTES}{bundle} "
            "(README.md: Which systems)")


def _copy_with_libraries(program, root):
    """PROGRAM (a path on this host) and the shared libraries it loads, at the same paths in ROOT."""
    needed = subprocess.run(["ldd", program], capture_output=True, text=True, check=True).stdout
    for path in [program, *re.findall(r"(/\S+) \(0x", needed)]:
        target = root / path.lstrip("/")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)  # follows symlinks: the library itself under the name loaded


def make_root(root, os_release, glibc, at="etc/os-release"):
    """A system of its own at ROOT: OS_RELEASE at AT (none when None), the tools, the
    repository's scripts/ in /repo, the recording stand-ins and a getconf telling GLIBC."""
    for name in TOOLS:
        _copy_with_libraries(shutil.which(name), root)
    (root / "bin").symlink_to("usr/bin")  # the stand-ins' #!/bin/bash, as on a merged-/usr system
    (root / "dev").mkdir()
    if os.geteuid() == 0:
        os.mknod(root / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    else:
        (root / "dev" / "null").touch()  # where bootstrap_in binds this host's /dev/null
    if glibc == REAL:
        _copy_with_libraries(shutil.which("getconf"), root)
    shutil.copytree(REPO / "scripts", root / "repo" / "scripts")
    if os_release is not None:
        (root / at).parent.mkdir(parents=True, exist_ok=True)
        (root / at).write_text(os_release)
    stand_ins = root / STAND_INS.lstrip("/")
    stand_ins.mkdir()
    scripts = {name: f'echo "{name} $*" >> {CALLS}\n' for name in RECORDED}
    if glibc != REAL:
        scripts["getconf"] = f'[ "$*" = GNU_LIBC_VERSION ] && echo "glibc {glibc}"\n'
    for name, body in scripts.items():
        (stand_ins / name).write_text("#!/bin/bash\n" + body)
        (stand_ins / name).chmod(0o755)
    return root


def snapshot(root):
    """Every path under ROOT with its type, size, mode and modification time."""
    return {str(p.relative_to(root)): (p.is_symlink(), p.lstat().st_size, p.lstat().st_mode, p.lstat().st_mtime_ns)
            for p in root.rglob("*")}


def bootstrap_in(root, *args):
    """scripts/bootstrap run inside ROOT as its own system (chroot), with the stand-ins first on
    PATH and nothing else of this environment. Not as root: as root of a user namespace, with a
    mount namespace of its own to bind /dev/null into ROOT (only root makes device files)."""
    chroot = [shutil.which("chroot", path=f"{os.environ['PATH']}:/usr/sbin:/sbin"), str(root),
              "/repo/scripts/bootstrap", *args]
    if os.geteuid() != 0:
        chroot = [shutil.which("unshare"), "--user", "--map-root-user", "--mount", "sh", "-c",
                  'mount --bind /dev/null "$0/dev/null" && exec "$@"', str(root), *chroot]
    return subprocess.run(chroot, env={"PATH": f"{STAND_INS}:/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=60)


def calls(root):
    path = root / CALLS.lstrip("/")
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("args", [[], ["--docker", "--slurm"]], ids=["plain", "docker-slurm"])
def test_other_systems_get_one_line_and_nothing_is_touched(tmp_path, system, args):
    os_release, glibc, *expected = SYSTEMS[system]
    root = make_root(tmp_path / "root", os_release, glibc)
    before = snapshot(root)
    proc = bootstrap_in(root, *args)
    assert (proc.returncode, proc.stdout) == (2, ""), (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.splitlines() == [expected_line(*expected)]
    assert calls(root) == [], "bootstrap ran what installs"
    assert snapshot(root) == before, "bootstrap changed the system or the tree"


def test_usr_lib_os_release_is_read_when_etc_has_none(tmp_path):
    """os-release(5): /etc/os-release, else /usr/lib/os-release."""
    os_release, glibc, *expected = SYSTEMS["ubuntu-24.04"]
    root = make_root(tmp_path / "root", os_release, glibc, at="usr/lib/os-release")
    proc = bootstrap_in(root)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [expected_line(*expected)]
    assert calls(root) == []


@pytest.mark.parametrize("at", ["etc/os-release", "usr/lib/os-release"])
def test_debian_12_goes_on_to_install_and_the_stand_ins_record_it(tmp_path, at):
    """The control: in the same kind of root with Debian 12's os-release, bootstrap passes the
    check and goes on (pip's CA, dpkg, apt-get, the venv) into the stand-ins, which record it:
    the empty records above are bootstrap stopping, not stand-ins that miss calls. It then stops
    where the stand-in python3.11 made no venv."""
    root = make_root(tmp_path / "root", DEBIAN_12, "2.36", at=at)
    proc = bootstrap_in(root)
    recorded = calls(root)
    assert "this system is" not in proc.stderr, proc.stderr
    assert recorded[0] == "python3 scripts/find-pip-ca.py .env", recorded
    assert "apt-get update -qq" in recorded, recorded
    install = next(c for c in recorded if c.startswith("apt-get install"))
    assert {"python3.11", "python3.11-venv", "python3-pygpu", "libgpuarray-dev"} <= set(install.split()), install
    assert recorded[-1] == "python3.11 -m venv .venv", recorded
    assert proc.returncode == 127 and ".venv/bin/pip" in proc.stderr, proc.stderr


def test_every_route_named_is_a_command_the_readme_shows():
    """Each command of the line is a command line of a README block that runs it (docker,
    bundle) or needs a GPU for it."""
    shown = {line.split("#")[0].strip() for b in all_shell_blocks() if b.path == "README.md"
             and b.marker in ("docker", "bundle", "needs-gpu") for line in b.text.splitlines()}
    named = [re.findall(r"`([^`]+)`", expected_line("x", "2.39", bundle)) for bundle in (BUNDLE, NO_BUNDLE)]
    assert len(named[0]) == 4 and len(named[1]) == 3, named
    missing = [command for command in named[0] if command not in shown]
    assert not missing, f"named by bootstrap, shown in no README block: {missing}"
