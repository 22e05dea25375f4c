"""docker/requirements*.lock agree with setup.py, the only place where Python pins live.

Regenerate the locks with scripts/docker-lock after changing a pin in setup.py. No Docker
and no network needed: setup.py is evaluated with setuptools.setup() captured.
"""
import json
import pathlib
import re
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.docker

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
IMAGE_EXTRAS = ("gpu", "plot", "test")  # what the cpu image installs; cuda adds "cuda"

CAPTURE = """
import json, runpy, setuptools
seen = {}
setuptools.setup = lambda **kw: seen.update(kw)
runpy.run_path("setup.py", run_name="__main__")
print(json.dumps({"install_requires": seen.get("install_requires", []),
                  "extras_require": seen.get("extras_require", {})}))
"""


@pytest.fixture(scope="module")
def setup_py():
    proc = subprocess.run([sys.executable, "-c", CAPTURE], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return ([Requirement(r) for r in data["install_requires"]],
            {k: [Requirement(r) for r in v] for k, v in data["extras_require"].items()})


def read_lock(name):
    """{canonical name: (version, [hashes])} of a pip-compile --generate-hashes lock."""
    entries, current = {}, None
    for line in (DOCKER / name).read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", line)
        if m:
            current = canonicalize_name(m.group(1))
            assert current not in entries, f"{name}: {current} listed twice"
            entries[current] = (m.group(2), [])
            continue
        for h in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
            assert current, f"{name}: hash before any requirement"
            entries[current][1].append(h)
        if line.strip() and not line.lstrip().startswith(("#", "--hash")):
            pytest.fail(f"{name}: unexpected line {line!r} (every requirement must be name==version)")
    return entries


@pytest.mark.parametrize("name", ["requirements.lock", "requirements-build.lock", "requirements-cuda.lock"])
def test_every_locked_package_is_pinned_with_hashes(name):
    lock = read_lock(name)
    assert lock, f"{name} is empty"
    for pkg, (version, hashes) in lock.items():
        assert hashes, f"{name}: {pkg}=={version} has no --hash (pip --require-hashes would refuse it)"


def _check(reqs, lock, lock_name):
    for req in reqs:
        pkg = canonicalize_name(req.name)
        assert pkg in lock, f"setup.py requires {req} but docker/{lock_name} has no {pkg}: rerun scripts/docker-lock"
        version = lock[pkg][0]
        assert req.specifier.contains(version, prereleases=True), (
            f"setup.py pins {req} but docker/{lock_name} has {pkg}=={version}: rerun scripts/docker-lock")


def test_lock_matches_setup_py(setup_py):
    install_requires, extras = setup_py
    lock = read_lock("requirements.lock")
    assert set(IMAGE_EXTRAS) <= set(extras), f"setup.py lost an extra the image installs: {IMAGE_EXTRAS}"
    _check(install_requires + [r for e in IMAGE_EXTRAS for r in extras[e]], lock, "requirements.lock")
    # the image-only tools of requirements-image.in are locked too
    for line in (DOCKER / "requirements-image.in").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            assert canonicalize_name(Requirement(line).name) in lock, f"{line} missing from requirements.lock"


def test_pins_in_setup_py_are_exact_for_the_stack(setup_py):
    """The image's versions are the contract's: every pin in setup.py is ==, so the lock
    cannot silently float away from it."""
    install_requires, extras = setup_py
    for req in install_requires + [r for e in (*IMAGE_EXTRAS, "cuda") for r in extras.get(e, [])]:
        assert [s.operator for s in req.specifier] == ["=="], f"setup.py: {req} is not an exact pin"


def test_cuda_lock_is_the_lock_plus_the_cuda_extra(setup_py):
    install_requires, extras = setup_py
    base, cuda = read_lock("requirements.lock"), read_lock("requirements-cuda.lock")
    _check(extras["cuda"], cuda, "requirements-cuda.lock")
    cuda_names = {canonicalize_name(r.name) for r in extras["cuda"]}
    for pkg, (version, _) in base.items():
        assert pkg in cuda and cuda[pkg][0] == version, f"requirements-cuda.lock disagrees on {pkg}=={version}"
    extra = set(cuda) - set(base)
    assert extra >= cuda_names, f"cuda lock lacks {cuda_names - extra}"
    for pkg in extra:
        assert pkg in cuda_names or pkg.startswith("nvidia-"), f"requirements-cuda.lock adds {pkg}"


def test_build_lock_matches_the_lock():
    base, build = read_lock("requirements.lock"), read_lock("requirements-build.lock")
    assert {"setuptools", "wheel"} <= set(build)
    for pkg, (version, hashes) in build.items():
        assert pkg in base and base[pkg][0] == version, f"requirements-build.lock: {pkg}=={version} differs"
        assert set(hashes) == set(base[pkg][1]), f"{pkg}: hashes differ between the locks"


def test_dockerfile_installs_only_from_the_locks_with_hashes():
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    installs = re.findall(r"pip install [^;\n]*", text)
    assert installs, "no pip install in docker/Dockerfile"
    for cmd in installs:
        if "--no-deps --no-build-isolation --no-index /tmp/src" in cmd:
            continue  # xor_gpu itself, from the build context, nothing downloaded
        assert "--require-hashes" in cmd and re.search(r"-r /tmp/lock/requirements(-build|-cuda)?\.lock", cmd), cmd
