"""The images: built from docker/Dockerfile by scripts/docker-build, pinned, non-root, with
a manifest of what they hold, baked warm caches and (cuda) the NVIDIA libraries wired."""
import hashlib
import json
import os
import pathlib
import re

import pytest

from dockerlib import REPO, compose_config, sh

pytestmark = pytest.mark.docker

DOCKERFILE = REPO / "docker" / "Dockerfile"
# Upper bounds on the image sizes (measured 1.25 GB and 2.16 GB, the cuda image's NVRTC 13.0
# for Blackwell 0.23 GB of it): a guard against bloat.
MAX_BYTES = {"cpu": 1_450_000_000, "cuda": 2_350_000_000}
GPUARRAY = "0.7.6-13+b1"  # the contract's libgpuarray/pygpu from Debian bookworm


def inspect(image):
    return json.loads(sh("docker", "image", "inspect", image).stdout)[0]


def in_image(image, *cmd, check=True):
    return sh("docker", "run", "--rm", "--network", "none", "--entrypoint", cmd[0], image, *cmd[1:],
              check=check)


def dockerfile_apt_pins():
    """{Debian package: version} as pinned in docker/Dockerfile (ARG defaults)."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    args = dict(re.findall(r"^ARG ([A-Z0-9_]+)=(\S+)$", text, re.M))
    pins = {pkg: args[arg] for pkg, arg in re.findall(r"([a-z0-9][a-z0-9.+-]*)=\$\{([A-Z0-9_]+)\}", text)}
    assert pins, "no pinned apt packages found in docker/Dockerfile"
    return pins


def lock_pins(name):
    text = (REPO / "docker" / name).read_text(encoding="utf-8")
    return {m.group(1).lower().replace("_", "-"): m.group(2)
            for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", text, re.M)}


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_image_builds_and_stays_small(images, target):
    info = inspect(images[target])
    size = info["Size"]
    print(f"{images[target]}: {size / 1e9:.2f} GB")
    assert size <= MAX_BYTES[target], f"{images[target]} is {size / 1e9:.2f} GB, over {MAX_BYTES[target] / 1e9} GB"


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_container_user_is_not_root(images, target):
    assert inspect(images[target])["Config"]["User"] == "xor"
    uid = in_image(images[target], "id", "-u").stdout.strip()
    assert uid != "0" and uid.isdigit(), f"container runs as uid {uid}"


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_image_environment(images, target):
    env = dict(e.split("=", 1) for e in inspect(images[target])["Config"]["Env"])
    assert "PYTHONHASHSEED" not in env  # any value will do (xor_gpu/launch.py)
    assert env["XOR_GPU_COMPILEDIR"].startswith("/home/xor/.cache/")
    assert env["POCL_CACHE_DIR"].startswith("/home/xor/.cache/")
    assert "-march=native" not in env.get("THEANO_FLAGS", "")
    assert not any(k in env for k in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")), \
        "a build-time CA setting leaked into the image"
    # the caches baked at build time are there and belong to the container user
    out = in_image(images[target], "sh", "-c",
                   'stat -c %U "$XOR_GPU_COMPILEDIR" "$POCL_CACHE_DIR"; '
                   'find "$XOR_GPU_COMPILEDIR" -maxdepth 1 -name "tmp*" | wc -l; '
                   'find "$POCL_CACHE_DIR" -type f | wc -l; ls /run/secrets 2>&1 || true').stdout.split()
    assert out[:2] == ["xor", "xor"], out
    assert int(out[2]) > 0, "no compiled Theano modules baked into the image"
    assert int(out[3]) > 0, "no PoCL kernels baked into the image"


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_manifest_lists_the_pinned_versions(images, target):
    manifest = json.loads(in_image(images[target], "cat", "/etc/xor_gpu/manifest.json").stdout)
    assert manifest["target"] == target
    assert manifest["base_image"] == "debian:bookworm-slim"
    base_id = sh("docker", "image", "inspect", "-f", "{{.Id}}", "debian:bookworm-slim").stdout.strip()
    assert manifest["base_image_id"] == base_id
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", manifest["build_date"]), manifest["build_date"]
    assert manifest["python"].startswith("3.11.")
    # Debian packages: exactly the versions docker/Dockerfile pins
    debian = manifest["debian_packages"]
    for pkg, version in dockerfile_apt_pins().items():
        assert debian.get(pkg) == version, f"{pkg}: image has {debian.get(pkg)}, Dockerfile pins {version}"
    for pkg in ("python3-pygpu", "libgpuarray3", "libgpuarray-dev"):
        assert debian[pkg] == GPUARRAY
    # pip: exactly the lock of the target
    freeze = {line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
              for line in manifest["pip_freeze"] if "==" in line}
    lock = lock_pins("requirements-cuda.lock" if target == "cuda" else "requirements.lock")
    for pkg, version in lock.items():
        assert freeze.get(pkg) == version, f"{pkg}: image has {freeze.get(pkg)}, lock pins {version}"
    extra = set(freeze) - set(lock) - {"pip", "xor-gpu"}
    assert not extra, f"installed but not locked: {sorted(extra)}"
    if target == "cpu":
        assert not any(p.startswith("nvidia-") for p in freeze), "the cpu image holds NVIDIA wheels"


def test_doctor_prints_the_manifest(images):
    proc = sh("docker", "run", "--rm", "--network", "none", images["cpu"], "doctor")
    assert "/etc/xor_gpu/manifest.json" in proc.stdout
    assert GPUARRAY in proc.stdout


def test_cuda_image_wires_the_nvidia_libraries(images):
    """libgpuarray dlopens the unversioned names; they load from /opt/cuda-libs without a GPU
    (libnvrtc's builtins are found through $ORIGIN)."""
    env = dict(e.split("=", 1) for e in inspect(images["cuda"])["Config"]["Env"])
    assert env["LD_LIBRARY_PATH"].split(":")[0] == "/opt/cuda-libs"
    code = ("import ctypes\n"
            "for n in ('libnvrtc.so', 'libcublas.so'): ctypes.CDLL(n)\n"
            "nv = ctypes.CDLL('libnvrtc.so'); major, minor = ctypes.c_int(), ctypes.c_int()\n"
            "assert nv.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) == 0\n"
            "print(f'{major.value}.{minor.value}')")
    assert in_image(images["cuda"], "python", "-c", code).stdout.strip() == "12.4"
    links = in_image(images["cuda"], "readlink", "/opt/cuda-libs/libcuda.so").stdout.strip()
    assert links == "/usr/lib/x86_64-linux-gnu/libcuda.so.1"


def pip_ca():
    """The CA bundle compose hands to the builds: an exported XOR_GPU_PIP_CA, else .env's
    (scripts/bootstrap writes it), else none."""
    if os.environ.get("XOR_GPU_PIP_CA"):
        return os.environ["XOR_GPU_PIP_CA"]
    env_file = REPO / ".env"
    lines = env_file.read_text(encoding="utf-8").splitlines() if env_file.exists() else []
    found = [line.split("=", 1)[1] for line in lines if line.startswith("XOR_GPU_PIP_CA=")]
    return found[-1] if found else None


def test_builds_get_the_pip_ca_from_env_file(docker):
    """compose resolves the pip_ca secret to the CA bootstrap chose: the same source for
    scripts/docker-build, these tests and a plain `docker compose build`."""
    secret = compose_config()["secrets"]["pip_ca"]["file"]
    assert secret == (pip_ca() or "/dev/null")


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_pip_ca_is_in_no_layer(images, target):
    """The CA bundle pip used during the build is in no file of the image: no file of its
    size has its digest (the image's own /etc/ssl/certs bundle is Debian's, without the proxy's CA)."""
    ca = pip_ca()
    if not ca:
        pytest.skip("no pip CA on this host (no TLS-intercepting proxy): nothing that could leak")
    data = pathlib.Path(ca).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    out = in_image(images[target], "sh", "-c",
                   f"find / -xdev -type f -size {len(data)}c -exec sha256sum {{}} + 2>/dev/null; true").stdout
    leaked = [line for line in out.splitlines() if line.startswith(digest)]
    assert not leaked, f"the build's CA bundle {ca} is in the image: {leaked}"


def test_gpu_services_reserve_an_nvidia_gpu(docker):
    config = compose_config("--profile", "gpu")["services"]
    for name in ("train-gpu", "test-gpu", "check-gpu"):
        svc = config[name]
        assert svc["build"]["target"] == "cuda"
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and d["capabilities"] == ["gpu"] for d in devices), devices
    assert config["test-gpu"]["environment"]["XOR_GPU_REQUIRE_GPU"] == "1"
    for name in ("train-gpu", "check-gpu"):
        assert config[name]["command"] == ["--device", "cuda"]
    # without the profile, no GPU service is started by `docker compose up`/`run`
    assert set(compose_config()["services"]) == {"train", "check", "test"}


def test_every_service_builds_its_image_here_and_never_pulls_it(docker):
    """No registry holds these images: compose is told so (pull_policy: never), so that a first
    run builds at once instead of asking Docker Hub (tests/docker/test_docs_docker.py holds the
    first screen of a fresh clone's run to that)."""
    services = compose_config("--profile", "gpu")["services"]
    assert {name: (svc.get("pull_policy"), "build" in svc) for name, svc in services.items()} == {
        name: ("never", True) for name in ("train", "train-gpu", "check", "check-gpu", "test", "test-gpu")}


def test_gpu_service_without_an_nvidia_runtime_fails_loudly(images, compose):
    """On a host without the NVIDIA container runtime the GPU service must not start (and so
    never trains on the CPU by accident); with one, it trains on the GPU."""
    runtimes = sh("docker", "info", "--format", "{{json .Runtimes}}").stdout
    proc = compose("--profile", "gpu", "run", "--rm", "-T", "train-gpu", "--steps", "2000", check=False)
    if "nvidia" not in runtimes:
        assert proc.returncode != 0
        assert 'could not select device driver "nvidia"' in proc.stderr + proc.stdout, proc.stderr
    else:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert compose.report("report-cuda.json")["device"]["active"].startswith("cuda")
