#!/usr/bin/env python3
"""Find the CA bundle this host's pip trusts and hand it to docker compose's builds.

Behind a TLS-intercepting proxy, pip inside `docker build` must trust the proxy's CA, which
the host's pip already trusts. This writes XOR_GPU_PIP_CA=<path> into compose's .env (the
file compose reads from the project folder), keeping every other line there; without a
proxy setting it removes that line, and builds use pip's own CA bundle. Standard library
only: scripts/bootstrap runs it with the system python3 before any venv exists.

Sources, first found wins: XOR_GPU_PIP_CA, PIP_CERT, the host pip's configured `cert`
(`python3 -m pip config list`), REQUESTS_CA_BUNDLE, SSL_CERT_FILE. A source that names a
file that does not exist (or is empty) is an error: exit 2, one line, nothing written.

Usage: find-pip-ca.py ENV_FILE
"""
import os
import re
import subprocess
import sys

KEY = "XOR_GPU_PIP_CA"
ENV_SOURCES = ("XOR_GPU_PIP_CA", "PIP_CERT")
LATE_ENV_SOURCES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
PIP_CONFIG = "pip config global.cert"


def pip_config_cert(environ, python=sys.executable):
    """`cert` from the configuration files of PYTHON's pip (the host's python3 when bootstrap
    runs this), or None (no pip, no setting). `pip config list` rather than `pip config get`,
    which misses site-wide files."""
    env = {k: v for k, v in environ.items() if k != "PIP_CERT"}  # the files only
    try:
        proc = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True,
                              text=True, timeout=60, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.findall(r"^(?:global|install|download)\.cert='(.*)'$", proc.stdout, re.M)
    return found[0] if proc.returncode == 0 and found else None


def find_ca(environ, pip_cert=pip_config_cert):
    """(path, source) of the first CA setting, or (None, None) without one."""
    for name in ENV_SOURCES:
        if environ.get(name):
            return environ[name], name
    cert = pip_cert(environ)
    if cert:
        return cert, PIP_CONFIG
    for name in LATE_ENV_SOURCES:
        if environ.get(name):
            return environ[name], name
    return None, None


def update_env_file(path, ca):
    """Replace (or drop, for ca None) our line in compose's .env; other lines stay as written."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    kept = [line for line in lines if not re.match(rf"\s*(export\s+)?{KEY}\s*=", line)]
    if ca:
        kept.append(f"{KEY}={ca}")
    if kept == lines:
        return
    if not kept:
        os.unlink(path)
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(kept) + "\n")
    os.replace(tmp, path)


def main(argv, environ):
    if len(argv) != 1:
        print("bootstrap: error: usage: find-pip-ca.py ENV_FILE", file=sys.stderr)
        return 2
    ca, source = find_ca(environ)
    if ca is not None:
        ca = os.path.abspath(os.path.expanduser(ca))
        if not os.path.isfile(ca) or os.path.getsize(ca) == 0:
            print(f"bootstrap: error: {source} names the CA bundle {ca}, which does not exist or is empty; "
                  f"fix or unset {source}", file=sys.stderr)
            return 2
    update_env_file(argv[0], ca)
    print(f"bootstrap: pip CA for docker builds: {ca} (from {source})" if ca else
          "bootstrap: pip CA for docker builds: none (pip's own CA bundle)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
