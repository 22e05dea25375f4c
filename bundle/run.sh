#!/usr/bin/env bash
# Runs `xor-gpu COMMAND ARGS` (default: `check --device cuda`) with the offline bundle's own
# Python in a clean environment; no Docker, internet or root needed. The archive is unpacked
# once, into a folder named by its checksum beside Theano's and PoCL's caches, so repeat runs
# are warm; inside an unpacked bundle the script runs it in place.
# Exit status: xor-gpu's; 2 bad launcher arguments; 3 no g++, or the bundle cannot be unpacked.
set -euo pipefail
usage() {
    cat <<'EOF'
usage: run.sh [--bundle FILE] [--cache DIR] [--cuda-libs DIR]... [COMMAND] [ARGS...]
  COMMAND        an xor-gpu command (default: check; with no --device in ARGS, --device cuda)
  --bundle FILE  the archive (default: xor_gpu-bundle.tar.gz beside this script)
  --cache DIR    keep the unpacked bundle and the compile caches in DIR
                 (default: ${XDG_CACHE_HOME:-~/.cache}/xor_gpu/bundle)
  --cuda-libs DIR  folder of libnvrtc.so.* / libcublas.so.* (repeatable; XOR_GPU_CUDA_LIBS)
EOF
}
die() { printf 'run.sh: error: %s\n' "$2" >&2; exit "$1"; }

archive="" cache="" cuda_libs=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --bundle | --cache | --cuda-libs) [[ -n ${2:-} ]] || die 2 "$1 needs a value" ;;&
        --bundle) [[ -f $2 ]] || die 2 "--bundle: no such file: $2"; archive=$(realpath "$2"); shift 2 ;;
        --cache) cache=$2; shift 2 ;;
        --cuda-libs) [[ -d $2 ]] || die 2 "--cuda-libs: no such folder: $2"; cuda_libs+=("$(realpath "$2")"); shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) break ;;
    esac
done
command=check
if [[ $# -gt 0 && $1 != -* ]]; then command=$1; shift; fi
args=("$@")
device_given=' --device[= ]'
if [[ $command == check && ! " $* " =~ $device_given ]]; then args=(--device cuda "$@"); fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -z $archive && -x $here/root/usr/bin/python3.11 ]]; then
    bundle=$here key_file=$here/MANIFEST.json  # in place
else
    archive=${archive:-$here/xor_gpu-bundle.tar.gz}
    [[ -f $archive ]] || die 2 "no bundle: $archive not found (give the archive with --bundle FILE)"
    key_file=$archive
fi
command -v g++ >/dev/null \
    || die 3 "g++ not found on PATH: Theano compiles its ops with it (install g++ or load a compiler module)"
key=$(sha256sum "$key_file" | cut -c1-16)
state=${cache:-${XDG_CACHE_HOME:-$HOME/.cache}/xor_gpu/bundle}/$key
mkdir -p "$state"/{theano,pocl,mpl} 2>/dev/null || die 3 "cannot create the cache folder $state"
state=$(cd "$state" && pwd)
if [[ -n $archive && ! -d $state/xor_gpu-bundle ]]; then
    # Unpacked aside, then renamed: a folder that exists is complete, also with parallel jobs.
    echo "run.sh: unpacking $archive into $state (once)" >&2
    tmp=$(mktemp -d "$state/unpack.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    tar -xzf "$archive" -C "$tmp" 2>/dev/null || die 3 "cannot unpack $archive (incomplete copy? compare it with its .sha256)"
    mv -T "$tmp/xor_gpu-bundle" "$state/xor_gpu-bundle" 2>/dev/null || [[ -d $state/xor_gpu-bundle ]] \
        || die 3 "cannot move the unpacked bundle into $state"
    rm -rf "$tmp"
    trap - EXIT
fi
bundle=${bundle:-$state/xor_gpu-bundle}
root=$bundle/root
python=$root/usr/bin/python3.11
[[ -x $python ]] || die 3 "$python missing: not an xor_gpu bundle"
# The caller's PATH stays (g++ from a compiler module, a python3 holding NVIDIA wheels); its
# Python variables and THEANO_FLAGS do not. Theano: Debian's pyconfig.h needs -I<root>/usr/include,
# and Theano's own -L names the build machine's LIBDIR, so the bundle's folders come first.
libs=$root/usr/lib/x86_64-linux-gnu:$root/usr/lib
cuda=$(IFS=:; printf '%s' "${cuda_libs[*]:-${XOR_GPU_CUDA_LIBS:-}}")
env=(HOME="$HOME" TMPDIR="${TMPDIR:-/tmp}" LANG=C.UTF-8 PATH="$PATH" LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
     PYTHONNOUSERSITE=1 PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg MPLCONFIGDIR="$state/mpl"
     XOR_GPU_COMPILEDIR="$state/theano" POCL_CACHE_DIR="$state/pocl" XOR_GPU_MANIFEST="$bundle/MANIFEST.json"
     THEANO_FLAGS="gcc.cxxflags=-I$root/usr/include -L$root/usr/lib/x86_64-linux-gnu -L$root/usr/lib")
if [[ -n $cuda ]]; then env+=(XOR_GPU_CUDA_LIBS="$cuda"); fi
for v in CUDA_VISIBLE_DEVICES CUDA_DEVICE_ORDER NVIDIA_VISIBLE_DEVICES CUDA_HOME CUDA_PATH OCL_ICD_VENDORS \
         OCL_ICD_FILENAMES POCL_DEVICES XOR_GPU_DEBUG XOR_GPU_REQUIRE_GPU TERM USER; do
    if [[ -n ${!v:-} ]]; then env+=("$v=${!v}"); fi
done
exec env -i "${env[@]}" "$python" -m xor_gpu "$command" "${args[@]}"
