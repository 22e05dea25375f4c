#!/usr/bin/env bash
# usage: run.sh [--bundle FILE] [--cache DIR] [--cuda-libs DIR]... [COMMAND] [ARGS...]
#   COMMAND          an xor-gpu command (default: check; with no --device in ARGS, --device cuda)
#   --bundle FILE    the archive (default, beside this script: xor_gpu-bundle.tar.gz on x86_64,
#                    xor_gpu-bundle-MACHINE.tar.gz on others, e.g. -aarch64 on Grace Hopper)
#   --cache DIR      keep the unpacked bundle and the compile caches in DIR, a folder of your own
#                    (default: ${XDG_CACHE_HOME:-~/.cache}/xor_gpu/bundle)
#   --cuda-libs DIR  folder of libnvrtc.so.* / libcublas.so.* (repeatable; XOR_GPU_CUDA_LIBS)
# Runs `xor-gpu COMMAND ARGS` with the offline bundle's own Python (no Docker, internet or root),
# unpacking the archive once into a folder named by its checksum; inside an unpacked bundle, in
# place. The run's environment and default command are xor_gpu/launch.py's.
# Nothing another user could change is run: the archive must match FILE.sha256 (when there), the
# cache folder be the user's own (xor_gpu/private_folder.py's rule), the unpacked files match
# MANIFEST.json's checksums, and on every run its manifest and interpreter match.
# Exit status: xor-gpu's; 2 bad launcher arguments; 3 a bundle for another machine, no g++ for
# this machine, or an archive or cache not to be used.
set -euo pipefail
die() { printf 'run.sh: error: %s\n' "$2" >&2; exit "$1"; }
trust() {  # the state folder $1 (a real path): the user's own, in folders no other user can change
    local dir=$1 paths=() first=1 uid mode owner name seen
    while paths+=("$dir") && [[ $dir != / ]]; do dir=${dir%/*} && dir=${dir:-/}; done
    while read -r uid mode owner name; do
        mode=$((8#$mode)) && printf -v seen '(owner %s, mode %04o)' "$owner" "$mode"
        if ((first)); then
            ((uid == EUID)) || die 3 "cache folder $1 is not yours $seen: $fix, or remove $1"
            ((!(mode & 8#22))) \
                || die 3 "cache folder $1 can be changed by other users $seen: $fix, or remove $1"
        elif (((uid != EUID && uid != 0) || (mode & 8#22 && !(mode & 8#1000)))); then
            die 3 "cache folder $1 lies in $name, which other users can change $seen: $fix"
        fi
        first=0
    done < <(stat -c '%u %a %U %n' -- "${paths[@]}")
}
sums() {  # MANIFEST.json's checksums of the files in $1, as sha256sum -c reads them
    sed -n '/^  "files": {$/,/^  }/s|^    "\(.*\)": "\([0-9a-f]\{64\}\)",\{0,1\}$|\2  \1|p' \
        "$1/MANIFEST.json"
}
manifest() {  # the archive's MANIFEST.json, read up to it only (in place: the one here)
    if [[ -z $archive ]]; then cat "$key"; else
        tar -xzOf "$archive" --occurrence=1 xor_gpu-bundle/MANIFEST.json; fi; }
same() {  # every run (about 30 ms): the manifest is the archive's, the interpreter the manifest's
    [[ -z $archive ]] || manifest | cmp -s - "$bundle/MANIFEST.json" || return 1
    local want have
    want=$(grep -m1 -F '    "root/usr/bin/python3.11": "' "$bundle/MANIFEST.json") || return 1
    have=$(sha256sum <"$python") && [[ $want == *": \"${have%% *}\""* ]]
}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) archive="" cache="" cuda=() machine=$(uname -m)
while [[ $# -gt 0 ]]; do
    case $1 in
        -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
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
    [[ $machine == x86_64 ]] && name=xor_gpu-bundle || name=xor_gpu-bundle-$machine
    archive=${archive:-$here/$name.tar.gz} key=$archive
    [[ -f $archive ]] || die 2 "no bundle: $archive not found (give it with --bundle FILE)"
fi
# The machine the bundle is for, before anything is unpacked (a manifest naming none: x86_64).
made=$({ manifest | grep -o '"machine": "[^"]*"' | cut -d'"' -f4; } 2>/dev/null) || :
[[ ${made:=x86_64} == "$machine" ]] || die 3 "this bundle is for $made machines, not $machine"
target=$(g++ -dumpmachine 2>/dev/null) \
    || die 3 "g++ not found on PATH: Theano compiles its ops with it (install g++ or load a module)"
[[ $target == "$machine"-* ]] || die 3 "g++ on PATH compiles for $target, not for this $machine"
digest=$(sha256sum <"$key") && digest=${digest%% *}
if [[ -n $archive && -f $archive.sha256 ]]; then
    read -r want _ <"$archive.sha256" || :
    [[ ${want:-} == "$digest" ]] || die 3 "$archive does not match $archive.sha256: copy both again"
fi
cache=${cache:-${XDG_CACHE_HOME:-$HOME/.cache}/xor_gpu/bundle}
fix="use --cache on a folder of your own"
state=$cache/${digest:0:16}
(umask 077 && mkdir -p "$state") 2>/dev/null || die 3 "cannot create the cache folder $state"
state=$(cd "$state" && pwd -P)
trust "$state"
if [[ -n $archive && ! -d $state/xor_gpu-bundle ]]; then  # unpacked aside, checked, renamed whole
    echo "run.sh: unpacking $archive into $state (once)" >&2
    tmp=$(mktemp -d "$state/unpack.XXXXXX") && new=$tmp/xor_gpu-bundle
    tar -xzf "$archive" -C "$tmp" 2>/dev/null || { rm -rf "$tmp"; die 3 "cannot unpack $archive"; }
    files=$(sums "$new")
    if ! (cd "$new" && sha256sum -c --status --strict <<<"$files") \
        || (($(wc -l <<<"$files") + 1 != $(find "$new" ! -type d | wc -l))); then
        rm -rf "$tmp"
        die 3 "$archive holds other files than its MANIFEST.json lists (build it with build.py)"
    fi
    mv -T "$new" "$state/xor_gpu-bundle" 2>/dev/null || :  # or another job did
    rm -rf "$tmp"
fi
[[ -z $archive ]] || bundle=$state/xor_gpu-bundle
python=$bundle/root/usr/bin/python3.11
[[ -x $python ]] || die 3 "$python missing: not an xor_gpu bundle"
same || die 3 "$bundle differs from its archive (MANIFEST.json, python3.11): remove it, unpack anew"
exec "$python" -I -B -m xor_gpu.launch bundle "$bundle/root" "$state" "${cuda[@]}" -- "$@"
