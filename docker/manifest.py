"""Write the image manifest (/etc/xor_gpu/manifest.json) at image build time.

What the image holds: Debian versions of the key packages, `pip freeze` of the venv, the
base image, the build target and date. `xor-gpu doctor` prints it; tests/docker checks it
against the pins. Standard library only; run with the venv's python.

Usage: python manifest.py --target cpu|cuda [--out PATH]
Build args arrive as environment variables: BASE, BASE_ID, VCS_REF, BUILD_DATE.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

KEY_DEBIAN_PACKAGES = (
    "python3", "python3.11", "python3-venv", "python3-dev", "g++", "libopenblas0-pthread",
    "python3-pygpu", "libgpuarray3", "libgpuarray-dev",
    "pocl-opencl-icd", "libpocl2", "ocl-icd-libopencl1", "libclblast-dev", "libclblast1",
)


def debian_versions(names):
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\n", *names],
                         capture_output=True, text=True, check=False).stdout
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def pip_freeze():
    """NAME==VERSION of every distribution in the venv (`pip list --format=freeze`: like
    `pip freeze --all`, with xor_gpu's version instead of its build folder's URL)."""
    out = subprocess.run([sys.executable, "-m", "pip", "list", "--format=freeze"],
                         capture_output=True, text=True, check=True).stdout
    return sorted(out.splitlines(), key=str.lower)


def os_release():
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            pairs = (line.rstrip().split("=", 1) for line in f if "=" in line)
            return {k: v.strip('"') for k, v in pairs}.get("PRETTY_NAME", "")
    except OSError:
        return ""


def build_date():
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if os.environ.get("BUILD_DATE"):
        return os.environ["BUILD_DATE"]
    now = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch else \
        datetime.datetime.now(datetime.timezone.utc)
    return now.replace(microsecond=0).isoformat()


def manifest(target):
    missing = [n for n in KEY_DEBIAN_PACKAGES if n not in debian_versions([n])]
    return {
        "image": f"xor-gpu:{target}",
        "target": target,
        "build_date": build_date(),
        "base_image": os.environ.get("BASE", ""),
        "base_image_id": os.environ.get("BASE_ID", ""),
        "vcs_ref": os.environ.get("VCS_REF", ""),
        "os": os_release(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "debian_packages": debian_versions(KEY_DEBIAN_PACKAGES),
        "debian_packages_missing": missing,
        "pip_freeze": pip_freeze(),
        "env": {k: os.environ.get(k, "") for k in (
            "PYTHONHASHSEED", "XOR_GPU_COMPILEDIR", "POCL_CACHE_DIR", "LD_LIBRARY_PATH")},
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--out", default="/etc/xor_gpu/manifest.json")
    args = p.parse_args()
    data = manifest(args.target)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"manifest: {args.out} ({len(data['debian_packages'])} Debian packages, "
          f"{len(data['pip_freeze'])} pip packages)")


if __name__ == "__main__":
    main()
