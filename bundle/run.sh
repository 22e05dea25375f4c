#!/usr/bin/env bash
# usage: run.sh [--bundle FILE] [--cache DIR] [--cuda-libs DIR]... [COMMAND] [ARGS...]
#   COMMAND          an xor-gpu command (default: check; with no --device in ARGS, --device cuda)
#   --bundle FILE    the archive (default: xor_gpu-bundle.tar.gz beside this script)
#   --cache DIR      keep the unpacked bundle and the compile caches in DIR
#                    (default: ${XDG_CACHE_HOME:-~/.cache}/xor_gpu/bundle)
#   --cuda-libs DIR  folder of libnvrtc.so.* / libcublas.so.* (repeatable; XOR_GPU_CUDA_LIBS)
# Runs `xor-gpu COMMAND ARGS` with the offline bundle's own Python (no Docker, internet or root),
# unpacking the archive once into a folder named by its checksum; inside an unpacked bundle, in
# place. The run's environment and default command are xor_gpu/launch.py's.
# Exit status: xor-gpu's; 2 bad launcher arguments; 3 no g++, or the bundle cannot be unpacked.
set -euo pipefail
die() { printf 'run.sh: error: %s\n' "$2" >&2; exit "$1"; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) archive="" cache="" cuda=()
while [[ $# -gt 0 ]]; do
    case $1 in
        -h | --help) sed -n '2,7p' "$0"; exit 0 ;;
        --bundle | --cache | --cuda-libs) [[ -n ${2:-} ]] || die 2 "$1 needs a value" ;;&
        --bundle) [[ -f $2 ]] || die 2 "--bundle: no such file: $2"; archive=$(realpath "$2") ;;
        --cache) cache=$2 ;;
        --cuda-libs) [[ -d $2 ]] || die 2 "--cuda-libs: no such folder: $2"
            cuda+=("$1=$(realpath "$2")") ;;
        *) break ;;
    esac
    shift 2
done
bundle=$here key=$here/MANIFEST.json  # in place, unless an archive is given or none is here
if [[ -n $archive || ! -x $here/root/usr/bin/python3.11 ]]; then
    archive=${archive:-$here/xor_gpu-bundle.tar.gz} key=$archive
    [[ -f $archive ]] || die 2 "no bundle: $archive not found (give it with --bundle FILE)"
fi
command -v g++ >/dev/null \
    || die 3 "g++ not found on PATH: Theano compiles its ops with it (install g++ or load a module)"
cache=${cache:-${XDG_CACHE_HOME:-$HOME/.cache}/xor_gpu/bundle}
state=$cache/$(sha256sum "$key" | cut -c1-16)
mkdir -p "$state" 2>/dev/null || die 3 "cannot create the cache folder $state"
state=$(cd "$state" && pwd)
if [[ -n $archive && ! -d $state/xor_gpu-bundle ]]; then  # unpacked aside, then renamed whole
    echo "run.sh: unpacking $archive into $state (once)" >&2
    tmp=$(mktemp -d "$state/unpack.XXXXXX")
    if tar -xzf "$archive" -C "$tmp" 2>/dev/null; then
        mv -T "$tmp/xor_gpu-bundle" "$state/xor_gpu-bundle" 2>/dev/null || :  # or another job did
    fi
    rm -rf "$tmp"
    [[ -d $state/xor_gpu-bundle ]] || die 3 "cannot unpack $archive (compare it with its .sha256)"
fi
[[ -z $archive ]] || bundle=$state/xor_gpu-bundle
python=$bundle/root/usr/bin/python3.11
[[ -x $python ]] || die 3 "$python missing: not an xor_gpu bundle"
exec "$python" -I -B -m xor_gpu.launch bundle "$bundle/root" "$state" "${cuda[@]}" -- "$@"
