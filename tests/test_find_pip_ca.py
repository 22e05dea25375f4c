"""scripts/find-pip-ca.py: the CA bundle this host's pip trusts, handed to compose's builds
through .env; and scripts/bootstrap stopping on a CA path that does not exist."""
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "find-pip-ca.py"


def load():
    spec = importlib.util.spec_from_file_location("find_pip_ca", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fpc = load()


def no_pip_config(environ):
    return None


@pytest.fixture
def ca(tmp_path):
    path = tmp_path / "proxy-ca.crt"
    path.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return path


def test_sources_in_order():
    every = {"XOR_GPU_PIP_CA": "/a", "PIP_CERT": "/b", "REQUESTS_CA_BUNDLE": "/d", "SSL_CERT_FILE": "/e"}
    pip = lambda environ: "/c"  # noqa: E731
    order = []
    env = dict(every)
    for name in ("XOR_GPU_PIP_CA", "PIP_CERT"):
        order.append(fpc.find_ca(env, pip))
        env.pop(name)
    order.append(fpc.find_ca(env, pip))
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        order.append(fpc.find_ca(env, no_pip_config))
        env.pop(name)
    assert order == [("/a", "XOR_GPU_PIP_CA"), ("/b", "PIP_CERT"), ("/c", "pip config global.cert"),
                     ("/d", "REQUESTS_CA_BUNDLE"), ("/e", "SSL_CERT_FILE")]
    assert fpc.find_ca({}, no_pip_config) == (None, None)


def test_pip_config_cert_is_read_from_pips_config_files(tmp_path, ca):
    """pip's own answer (`pip config list`), from a config file, not the variable. The pip is
    .venv's (scripts/bootstrap makes it; this env's Python, made by uv, has none)."""
    python = str(REPO / ".venv" / "bin" / "python")
    conf = tmp_path / "pip.conf"
    conf.write_text(f"[global]\ncert = {ca}\n")
    env = {"PATH": os.environ["PATH"], "PIP_CONFIG_FILE": str(conf), "PIP_CERT": "/elsewhere"}
    assert fpc.pip_config_cert(env, python) == str(ca)
    assert fpc.pip_config_cert({"PATH": os.environ["PATH"], "PIP_CONFIG_FILE": os.devnull}, python) is None
    assert fpc.pip_config_cert(env, str(tmp_path / "no-python")) is None


def run(env_file, environ, cwd):
    return subprocess.run([sys.executable, str(SCRIPT), str(env_file)], capture_output=True, text=True,
                          env=environ, cwd=cwd)


def bare_env(**extra):
    """No proxy setting at all: no CA variable and no pip configuration file."""
    return {"PATH": os.environ["PATH"], "PIP_CONFIG_FILE": os.devnull, **extra}


def test_no_proxy_writes_no_ca(tmp_path):
    proc = run(tmp_path / ".env", bare_env(), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / ".env").exists()
    assert proc.stdout.strip() == "bootstrap: pip CA for docker builds: none (pip's own CA bundle)"


def test_ca_goes_to_env_file_keeping_the_users_lines(tmp_path, ca):
    env_file = tmp_path / ".env"
    env_file.write_text("XOR_GPU_OUT=/data/out\nXOR_GPU_PIP_CA=/old/ca.crt\n# mine\n")
    proc = run(env_file, bare_env(PIP_CERT=str(ca)), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert env_file.read_text().splitlines() == ["XOR_GPU_OUT=/data/out", "# mine", f"XOR_GPU_PIP_CA={ca}"]
    assert f"{ca} (from PIP_CERT)" in proc.stdout
    # run again without a proxy: our line goes, the user's stay
    assert run(env_file, bare_env(), tmp_path).returncode == 0
    assert env_file.read_text().splitlines() == ["XOR_GPU_OUT=/data/out", "# mine"]


def test_relative_ca_path_is_made_absolute(tmp_path, ca):
    proc = run(tmp_path / ".env", bare_env(SSL_CERT_FILE=ca.name), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / ".env").read_text() == f"XOR_GPU_PIP_CA={ca}\n"


@pytest.mark.parametrize("content", [None, ""])
def test_missing_or_empty_ca_exits_2_with_one_line_and_writes_nothing(tmp_path, content):
    path = tmp_path / "nope.crt"
    if content is not None:
        path.write_text(content)
    env_file = tmp_path / ".env"
    env_file.write_text("XOR_GPU_OUT=/data/out\n")
    proc = run(env_file, bare_env(PIP_CERT=str(path)), tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bootstrap: error: PIP_CERT names the CA bundle")
    assert str(path) in lines[0]
    assert env_file.read_text() == "XOR_GPU_OUT=/data/out\n"


def test_bootstrap_stops_on_a_missing_ca_before_anything(tmp_path):
    """scripts/bootstrap with PIP_CERT=/nope: exit 2, the one line, and nothing made (no .env,
    no .venv, no out): the CA is looked at before any package, venv or image."""
    (tmp_path / "scripts").mkdir()
    for name in ("bootstrap", "find-pip-ca.py"):
        shutil.copy2(REPO / "scripts" / name, tmp_path / "scripts" / name)
    proc = subprocess.run([str(tmp_path / "scripts" / "bootstrap"), "--docker"], capture_output=True, text=True,
                          env=bare_env(PIP_CERT="/nope"), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "bootstrap: error: PIP_CERT names the CA bundle /nope, which does not exist or is empty; fix or unset PIP_CERT"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scripts"]


@pytest.mark.parametrize("env_file", [None, "XOR_GPU_PIP_CA={ca}\n"], ids=["no .env", ".env"])
def test_docker_build_hands_over_to_compose_with_or_without_env_file(env_file, ca, tmp_path):
    """A machine without a proxy has no .env: the build must still run (it once exited 2,
    silently). `docker` is a stand-in that records its arguments."""
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "docker-build", tree / "scripts" / "docker-build")
    if env_file:
        (tree / ".env").write_text(env_file.format(ca=ca))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "docker-calls"
    (bin_dir / "docker").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (bin_dir / "docker").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "XOR_GPU_PIP_CA"}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    proc = subprocess.run(["bash", str(tree / "scripts" / "docker-build"), "cpu"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"pip CA: {ca if env_file else 'none'}," in proc.stdout, proc.stdout
    assert calls.read_text().splitlines()[-1] == "compose --profile gpu build train"
