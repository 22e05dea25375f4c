#!/usr/bin/env bash
# Build the offline bundle of xor_gpu for GPU nodes without Docker or internet.
#
# Needs, on the build machine: Debian 12 (bookworm) x86-64 with apt-get (root, or an apt
# state that already holds bookworm's package lists), python3 with pip, and access to
# Debian's mirrors and PyPI. Produces ONE archive (default dist/xor_gpu-bundle.tar.gz)
# plus a copy of run.sh beside it (dist/xor_gpu-bundle-run.sh) and a .sha256 file:
#
#   xor_gpu-bundle/
#     run.sh          the one command a GPU node runs (see bundle/run.sh)
#     MANIFEST.json   what is inside: Debian packages, wheels, git commit, sizes
#     root/usr/...    CPython 3.11 + headers, pygpu, libgpuarray, CLBlast and the OpenCL
#                     ICD loader, unpacked from Debian bookworm .debs (dpkg -x), and
#                     the wheels of xor_gpu[gpu,plot,test] unzipped into
#                     root/usr/lib/python3/dist-packages
#     app/            the repo's tests/ and the pytest configuration
#
# The Python pins come from setup.py only: the xor_gpu wheel is built from the working
# tree and pip resolves its requirements. Left out, to stay under 64 MiB: scipy (Theano
# 1.0.5 imports it only optionally; +25 MiB) and OpenBLAS (+11 MiB; run.sh sets Theano's
# blas.ldflags empty, so the CPU reference uses numpy's own BLAS).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bundle/build.sh [--out FILE] [--python PY] [--no-plot] [--keep-work]

  --out FILE     archive to write (default: <repo>/dist/xor_gpu-bundle.tar.gz)
  --python PY    Python with pip used to build and download the wheels (default: python3)
  --no-plot      leave out matplotlib and its dependencies (about -17 MiB): run.sh then
                 writes no PNGs. For a node or a carry limit that needs room for more, e.g.
                 NVRTC 12 beside the bundle (see docs/gpu-validation.md)
  --keep-work    keep the staging folder and print its path
Environment: SOURCE_DATE_EPOCH (timestamps in the archive; default: the last commit's time).
EOF
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
out="$repo/dist/xor_gpu-bundle.tar.gz"
python=${PYTHON:-python3}
keep_work=0
exclude=(scipy)  # wheels resolved from setup.py but not unpacked
max_bytes=$((64 * 1024 * 1024))
EXTRAS="gpu,plot,test"  # xor_gpu's extras that go into the bundle

while [[ $# -gt 0 ]]; do
    case $1 in
        --out) out=${2:?--out needs a path}; shift 2 ;;
        --python) python=${2:?--python needs a program}; shift 2 ;;
        --no-plot) EXTRAS="gpu,test"; shift ;;
        --keep-work) keep_work=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

# Debian bookworm packages, unpacked with dpkg -x (no root needed where the bundle runs).
# libpython3.11-dev: only its headers and the libpython3.11.so link are kept.
DEBS=(
    python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libpython3.11
    libpython3.11-dev python3-distutils
    python3-pygpu libgpuarray3 libgpuarray-dev
    libclblast1 ocl-icd-libopencl1
)
# Pure Python wheels and manylinux wheels for CPython 3.11 on x86-64 (glibc >= 2.28 nodes).
PLATFORMS=(manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_28_x86_64)

log() { printf '[build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

[[ $(uname -m) == x86_64 ]] || die "the bundle is x86-64 only; this machine is $(uname -m)"
# shellcheck source=/dev/null
. /etc/os-release
[[ ${VERSION_CODENAME:-} == bookworm ]] \
    || die "run this on Debian 12 (bookworm): the .debs come from this machine's apt sources (found ${PRETTY_NAME:-unknown})"
command -v apt-get >/dev/null || die "apt-get not found"
"$python" -m pip --version >/dev/null 2>&1 || die "$python has no pip"
[[ -f $repo/setup.py ]] || die "no setup.py in $repo"

start_s=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/xor_gpu-bundle-build.XXXXXX")
cleanup() {
    if [[ $keep_work == 1 ]]; then log "staging kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
stage=$work/xor_gpu-bundle
root=$stage/root
site=$root/usr/lib/python3/dist-packages
mkdir -p "$work/debs" "$work/wheels" "$work/src" "$root" "$stage/app"

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
    SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || true)
    SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-946684800}
fi
export SOURCE_DATE_EPOCH

# --- Debian packages ---------------------------------------------------------------
log "downloading ${#DEBS[@]} Debian packages"
apt_download() {
    (cd "$work/debs" && apt-get download -q -o APT::Sandbox::User=root "${DEBS[@]}") >"$work/apt.log" 2>&1
}
if ! apt_download; then
    [[ $(id -u) == 0 ]] || { cat "$work/apt.log" >&2; die "apt-get download failed (run as root so that apt-get update can run)"; }
    log "apt-get download failed; running apt-get update"
    apt-get update -q >"$work/apt-update.log" 2>&1 || { cat "$work/apt-update.log" >&2; die "apt-get update failed"; }
    apt_download || { cat "$work/apt.log" >&2; die "apt-get download failed"; }
fi
for deb in "$work"/debs/*.deb; do
    case $(basename "$deb") in
        libpython3.11-dev_*)
            dpkg -x "$deb" "$work/dev"
            mkdir -p "$root/usr/include" "$root/usr/lib/x86_64-linux-gnu"
            cp -a "$work/dev/usr/include/." "$root/usr/include/"
            cp -a "$work/dev/usr/lib/x86_64-linux-gnu/libpython3.11.so" "$root/usr/lib/x86_64-linux-gnu/"
            ;;
        *) dpkg -x "$deb" "$root" ;;
    esac
done
# The unversioned names libgpuarray dlopens / Theano links (normally from -dev packages).
ln -sfn libclblast.so.1 "$root/usr/lib/x86_64-linux-gnu/libclblast.so"
ln -sfn libOpenCL.so.1 "$root/usr/lib/x86_64-linux-gnu/libOpenCL.so"
# Links out of the bundle would reach into the node: Debian's stdlib links sitecustomize.py
# to /etc/python3.11/sitecustomize.py, which would run the node's file (or dangle).
find "$root" -type l -lname '/*' -print -delete | sed 's/^/removed absolute link: /' >&2
rm -rf "$root"/usr/share/{doc,doc-base,man,lintian,binfmts} "$root/usr/lib/libgpuarray-static.a" \
       "$root"/usr/lib/python3/dist-packages/pygpu/*.c "$root/usr/lib/python3/dist-packages/pygpu/tests"

# --- wheels: xor_gpu from the working tree, Theano from its sdist, the rest from PyPI --
log "building the xor_gpu wheel from $repo"
for f in setup.py setup.cfg pyproject.toml MANIFEST.in README.md LICENSE; do
    [[ -e $repo/$f ]] && cp -a "$repo/$f" "$work/src/"
done
cp -a "$repo/xor_gpu" "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
"$python" -m pip wheel -q --no-deps -w "$work/wheels" "$work/src" >"$work/pip-wheel.log" 2>&1 \
    || { cat "$work/pip-wheel.log" >&2; die "building the xor_gpu wheel failed"; }
xor_wheel=$(ls "$work"/wheels/xor_gpu-*.whl)

# Requirements that exist only as an sdist (Theano) are built into wheels first, so that
# the download below can insist on binary wheels for the target platform.
mapfile -t sdist_reqs < <("$python" - "$xor_wheel" <<'EOF'
import sys, zipfile
from email.parser import Parser
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = Parser().parsestr(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode())
for req in meta.get_all("Requires-Dist") or []:
    if req.lower().startswith("theano"):
        print(req.split(";")[0].strip())
EOF
)
[[ ${#sdist_reqs[@]} -gt 0 ]] || die "setup.py does not require theano"
log "building wheels from sdists: ${sdist_reqs[*]}"
"$python" -m pip wheel -q --no-deps --no-binary=:all: -w "$work/wheels" "${sdist_reqs[@]}" >"$work/pip-sdist.log" 2>&1 \
    || { cat "$work/pip-sdist.log" >&2; die "building ${sdist_reqs[*]} failed"; }

log "downloading the wheels of xor_gpu[$EXTRAS] for CPython 3.11"
plat_args=()
for p in "${PLATFORMS[@]}"; do plat_args+=(--platform "$p"); done
"$python" -m pip download -q --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
    "${plat_args[@]}" --find-links "$work/wheels" -d "$work/wheels" \
    "xor_gpu[$EXTRAS] @ file://$xor_wheel" >"$work/pip-download.log" 2>&1 \
    || { cat "$work/pip-download.log" >&2; die "pip download failed"; }

log "unpacking wheels into root/usr/lib/python3/dist-packages (left out: ${exclude[*]:-nothing})"
"$python" - "$work/wheels" "$site" "${exclude[@]}" <<'EOF'
import os, re, sys, zipfile
wheels, site, exclude = sys.argv[1], sys.argv[2], {re.sub(r"[-_.]+", "_", e).lower() for e in sys.argv[3:]}
for name in sorted(os.listdir(wheels)):
    if not name.endswith(".whl"):
        continue
    dist = name.split("-")[0].lower()
    if dist in exclude:
        continue
    with zipfile.ZipFile(os.path.join(wheels, name)) as z:
        for info in z.infolist():
            path = info.filename
            parts = path.split("/")
            if parts[0].endswith(".data"):  # only purelib/platlib; scripts and data are not needed
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue
                path = "/".join(parts[2:])
            if path.endswith("/") or "__pycache__" in parts:
                continue
            target = os.path.join(site, path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                dst.write(src.read())
EOF
# Test suites of the dependencies are not needed at run time.
rm -rf "$site"/numpy/*/tests "$site"/numpy/tests "$site"/matplotlib/tests "$site"/mpl_toolkits/*/tests

# --- the project's tests and pytest configuration, run.sh, docs ----------------------
# tests/bundle and tests/docker build things; they are not run on a GPU node.
cp -a "$repo/tests" "$stage/app/tests"
rm -rf "$stage/app/tests/bundle" "$stage/app/tests/docker"
find "$stage/app" \( -name __pycache__ -o -name .pytest_cache \) -prune -exec rm -rf {} +
for f in pyproject.toml pytest.ini setup.cfg; do  # the pytest configuration (markers)
    [[ -e $repo/$f ]] && cp -a "$repo/$f" "$stage/app/"
done
install -m 0755 "$here/run.sh" "$stage/run.sh"
[[ -e $repo/docs/gpu-validation.md ]] && cp -a "$repo/docs/gpu-validation.md" "$stage/"

# --- manifest and a smoke test of the staged runtime ----------------------------------
log "writing MANIFEST.json"
commit=$(git -C "$repo" rev-parse -q --verify HEAD 2>/dev/null || echo none)
dirty=$(git -C "$repo" status --porcelain 2>/dev/null | head -c1)
"$python" - "$stage" "$work/debs" "$work/wheels" "$commit" "${dirty:+dirty}" "$EXTRAS" "${exclude[@]}" <<'EOF'
import json, os, subprocess, sys, time
stage, debs, wheels, commit, dirty, extras = sys.argv[1:7]
exclude = sys.argv[7:]
def deb_field(path, field):
    return subprocess.run(["dpkg-deb", "-f", path, field], capture_output=True, text=True, check=True).stdout.strip()
epoch = int(os.environ["SOURCE_DATE_EPOCH"])
manifest = {
    "schema": "xor_gpu.bundle/1",
    "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)),
    "git_commit": commit + ("-dirty" if dirty else ""),
    "python": "3.11 (Debian bookworm)",
    "extras": extras.split(","),
    "debian_packages": {deb_field(os.path.join(debs, d), "Package"): deb_field(os.path.join(debs, d), "Version")
                        for d in sorted(os.listdir(debs)) if d.endswith(".deb")},
    "wheels": sorted(w for w in os.listdir(wheels) if w.endswith(".whl")
                     and w.split("-")[0].lower() not in {e.lower() for e in exclude}),
    "left_out": exclude,
    "host_needs": ["glibc >= 2.35", "g++", "NVIDIA driver + NVRTC/cuBLAS (CUDA toolkit or NVIDIA wheels) for cuda",
                   "an OpenCL ICD (e.g. PoCL) for openclP:D"],
}
with open(os.path.join(stage, "MANIFEST.json"), "w") as f:
    json.dump(manifest, f, indent=2, sort_keys=True)
    f.write("\n")
EOF

log "smoke test of the staged Python"
(cd "$work" && env -i PATH=/usr/bin:/bin HOME="$work" PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1 \
    LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$root/usr/lib" \
    "$root/usr/bin/python3.11" -c '
import sys, numpy, pygpu, mako, pkg_resources, pytest, xor_gpu.cli
root = sys.argv[1]
for m in (numpy, pygpu, xor_gpu.cli):
    assert m.__file__.startswith(root), (m.__name__, m.__file__)
print("python", sys.version.split()[0], "numpy", numpy.__version__, "pygpu", pygpu.__version__)
' "$root" >&2) || die "the staged Python cannot import the stack"

# --- the archive: sorted, fixed owners and times, gzip without a name or time --------
mkdir -p "$(dirname "$out")"
log "writing $out"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$work" -cf - xor_gpu-bundle | gzip -n -9 >"$out.tmp"
mv "$out.tmp" "$out"
size=$(stat -c %s "$out")
runner="${out%.tar.gz}-run.sh"
install -m 0755 "$here/run.sh" "$runner"
(cd "$(dirname "$out")" && sha256sum "$(basename "$out")" >"$(basename "$out").sha256")
log "done in $((SECONDS - start_s)) s: $out ($((size / 1024)) KiB = $(awk -v b="$size" 'BEGIN{printf "%.1f", b/1048576}') MiB), runner $runner"
((size <= max_bytes)) || die "the archive is $size bytes, over the 64 MiB limit"
