#!/usr/bin/env bash
# xor_gpu offline check: train the XOR network on a GPU (or another Theano device) and
# compare it with the CPU, using only the offline bundle (no Docker, no internet, no root).
#
#   bash dist/xor_gpu-bundle-run.sh [options]     # beside xor_gpu-bundle.tar.gz: unpacks it
#   bash xor_gpu-bundle/run.sh [options]          # inside an unpacked bundle: runs in place
#
# Steps, all logged to OUT/run.log: setup, doctor, train (the seed config), parity
# (cpu against DEV), tests (the bundled device tests). Everything temporary (the unpacked
# bundle, Theano's compiledir, PoCL's kernel cache, HOME) lives in one temp folder that is
# removed at the end. Results in OUT:
#   run.log  summary.json  doctor.json  train.json  train.png  parity.json  parity.png
# Exit status: 0 every step passed; 1 a step failed (see the summary); 2 bad arguments;
#              3 the bundle could not be set up (no g++, no NVIDIA libraries, bad archive).
#
# The node needs: x86-64 Linux with glibc >= 2.35, g++, and for cuda an NVIDIA driver plus
# NVRTC and cuBLAS (a CUDA toolkit, NVIDIA's pip wheels e.g. of an installed PyTorch, or
# --cuda-libs DIR). NVRTC must not be newer than the driver's CUDA version.
set -uo pipefail

usage() {
    cat <<'EOF'
usage: run.sh [--device DEV] [--out DIR] [--cuda-libs DIR]... [--steps N] [--bundle FILE]
              [--cache DIR] [--tests EXPR] [--step-timeout S] [--setup-only] [--keep-work]

  --device DEV      device to check against the CPU: cuda (default), cudaN, openclP:D
                    (opencl0:0 with PoCL on the CPU is a dry run that needs no GPU)
  --out DIR         folder for the results (default ./xor_gpu-check-YYYYmmdd-HHMMSS)
  --cuda-libs DIR   folder holding libnvrtc.so.* and/or libcublas.so.*, searched first
                    (repeatable; also XOR_GPU_CUDA_LIBS, colon-separated). Then: CUDA_HOME,
                    CUDA_PATH, /usr/local/cuda*, the NVIDIA wheels of a python3 on PATH
                    (PyTorch's), ldconfig, LD_LIBRARY_PATH. The first NVRTC and the first
                    cuBLAS that the driver supports are used (NVRTC <= the driver's CUDA)
  --steps N         gradient steps of the parity run (default: the seed config, 60000);
                    the train step always runs the seed config
  --bundle FILE     the archive to unpack (default: run in place inside an unpacked bundle,
                    else unpack xor_gpu-bundle.tar.gz from beside this script)
  --cache DIR       keep Theano's compiledir and PoCL's kernel cache in DIR between runs
  --tests EXPR      pytest marker expression of the test step (default: device)
  --step-timeout S  stop a step after S seconds (default 480)
  --setup-only      stop after the setup (bundle, g++, NVIDIA libraries, Python): a quick
                    look at what a full run would use, recorded in OUT/summary.json
  --keep-work       keep the temp folder (its path is printed)
EOF
}

die_usage() { printf 'run.sh: error: %s\n' "$*" >&2; exit 2; }

device=cuda
out=""
cuda_dirs=()
steps=""
archive=""
cache=""
tests_expr=device
step_timeout=480
keep_work=0
setup_only=0
if [[ -n ${XOR_GPU_CUDA_LIBS:-} ]]; then IFS=: read -ra cuda_dirs <<<"$XOR_GPU_CUDA_LIBS"; fi

while [[ $# -gt 0 ]]; do
    case $1 in
        --device) device=${2:-}; shift 2 || die_usage "--device needs a value" ;;
        --out) out=${2:-}; shift 2 || die_usage "--out needs a folder" ;;
        --cuda-libs) cuda_dirs+=("${2:-}"); shift 2 || die_usage "--cuda-libs needs a folder" ;;
        --steps) steps=${2:-}; shift 2 || die_usage "--steps needs a number" ;;
        --bundle) archive=${2:-}; shift 2 || die_usage "--bundle needs a file" ;;
        --cache) cache=${2:-}; shift 2 || die_usage "--cache needs a folder" ;;
        --tests) tests_expr=${2:-}; shift 2 || die_usage "--tests needs an expression" ;;
        --step-timeout) step_timeout=${2:-}; shift 2 || die_usage "--step-timeout needs seconds" ;;
        --keep-work) keep_work=1; shift ;;
        --setup-only) setup_only=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die_usage "unknown argument: $1" ;;
    esac
done
[[ $device =~ ^(cuda[0-9]*|opencl[0-9]+:[0-9]+)$ ]] \
    || die_usage "--device must be cuda, cudaN or openclP:D (the CPU is the reference), got '$device'"
[[ -z $steps || $steps =~ ^[1-9][0-9]*$ ]] || die_usage "--steps must be a positive integer, got '$steps'"
[[ $step_timeout =~ ^[1-9][0-9]*$ ]] || die_usage "--step-timeout must be a positive integer, got '$step_timeout'"
[[ -n $tests_expr ]] || die_usage "--tests needs an expression"
for d in "${cuda_dirs[@]}"; do
    [[ -d $d ]] || die_usage "--cuda-libs / XOR_GPU_CUDA_LIBS: no such folder: '$d'"
done

self_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${out:-$PWD/xor_gpu-check-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out" || die_usage "cannot create the output folder $out"
out=$(cd "$out" && pwd)
rm -f "$out"/{run.log,summary.json,doctor.json,train.json,train.png,parity.json,parity.png}
exec > >(tee -a "$out/run.log") 2>&1
tee_pid=$!

work=$(mktemp -d "${TMPDIR:-/tmp}/xor_gpu-check.XXXXXX") || { echo "run.sh: error: cannot make a temp folder" >&2; exit 3; }
# shellcheck disable=SC2317  # invoked by the EXIT trap
finish() {
    local rc=$?
    if [[ $keep_work == 1 ]]; then echo "temp folder kept: $work"; else rm -rf "$work"; fi
    exec 1>&- 2>&-
    wait "$tee_pid" 2>/dev/null
    exit "$rc"
}
trap finish EXIT
setup_fail() { printf 'run.sh: setup failed: %s\n' "$*" >&2; exit 3; }
note() { printf '[run %(%H:%M:%S)T] %s\n' -1 "$*"; }

note "xor_gpu bundle check: device $device, results in $out"
note "host: $(uname -srm), $(ldd --version 2>/dev/null | head -n1)"

# --- the bundle: in place, or unpacked from the archive into the temp folder ----------
if [[ -z $archive && -x $self_dir/root/usr/bin/python3.11 ]]; then
    bundle_dir=$self_dir
    note "bundle: $bundle_dir (in place)"
else
    archive=${archive:-$self_dir/xor_gpu-bundle.tar.gz}
    [[ -f $archive ]] || setup_fail "no bundle: neither $self_dir/root nor the archive $archive (use --bundle FILE)"
    note "unpacking $archive"
    tar -xzf "$archive" -C "$work" || setup_fail "cannot unpack $archive"
    bundle_dir=$work/xor_gpu-bundle
fi
root=$bundle_dir/root
python=$root/usr/bin/python3.11
[[ -x $python ]] || setup_fail "$python missing: not an xor_gpu bundle"
libdirs=$root/usr/lib/x86_64-linux-gnu:$root/usr/lib

# g++: Theano compiles every op with it (the GPU backend refuses gcc alone). Found on the
# caller's PATH (a compiler module, say) and linked into the clean PATH of the steps.
gxx=$(command -v g++) || setup_fail "g++ not found on PATH: Theano compiles its ops with g++ (install g++ or load a compiler module)"
mkdir -p "$work"/{bin,home,tmp,pycache,mpl}
ln -s "$gxx" "$work/bin/g++"
cache=${cache:-$work/cache}
mkdir -p "$cache/theano" "$cache/pocl" || setup_fail "cannot create the cache folder $cache"
cache=$(cd "$cache" && pwd)

# --- NVIDIA libraries (cuda only) ------------------------------------------------------
ldconfig_cmd=$(command -v ldconfig || echo /sbin/ldconfig)
libcuda=""
extra_ld=""
gpu_info=""
cuda_env=()

# Sets libcuda (the driver's libcuda.so.1), and extra_ld when the loader would not find it
# without the caller's LD_LIBRARY_PATH (which the steps do not inherit).
find_libcuda() {
    local d dirs=()
    libcuda=$("$ldconfig_cmd" -p 2>/dev/null | awk '$1 == "libcuda.so.1" && /x86-64/ {print $NF; exit}')
    [[ -n $libcuda ]] && return 0
    IFS=: read -ra dirs <<<"${LD_LIBRARY_PATH:-}"
    for d in "${dirs[@]}" /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib64 /usr/lib/x86_64-linux-gnu /usr/lib/wsl/lib; do
        if [[ -n $d && -e $d/libcuda.so.1 ]]; then
            libcuda=$d/libcuda.so.1
            extra_ld=$d
            return 0
        fi
    done
    return 1
}

# Folders that may hold libnvrtc.so.* / libcublas.so.*, most preferred first.
cuda_candidates() {
    local d py dirs=()
    for d in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
        [[ -n $d ]] && printf '%s\n' "$d/lib64" "$d/targets/x86_64-linux/lib"
    done
    while IFS= read -r d; do
        printf '%s\n' "$d/lib64" "$d/targets/x86_64-linux/lib"
    done < <(compgen -G '/usr/local/cuda-*' | sort -rV)
    # NVIDIA's pip wheels (nvidia/<component>/lib, or nvidia/cu13/lib) of a python3 on
    # PATH, e.g. the one that holds PyTorch; found without importing torch.
    for py in python3 python; do
        command -v "$py" >/dev/null || continue
        while IFS= read -r d; do
            compgen -G "$d/*/lib" | LC_ALL=C sort
        done < <(timeout 60 "$py" -c '
import importlib.util, os, site
roots = []
try:
    spec = importlib.util.find_spec("nvidia")
    roots += list(spec.submodule_search_locations or []) if spec else []
except Exception:
    pass
for sp in site.getsitepackages() + [site.getusersitepackages()]:
    roots.append(os.path.join(sp, "nvidia"))
print("\n".join(r for r in dict.fromkeys(roots) if os.path.isdir(r)))' 2>/dev/null)
    done
    "$ldconfig_cmd" -p 2>/dev/null | awk '/lib(nvrtc|cublas)\.so/ {print $NF}' | xargs -r -n1 dirname
    IFS=: read -ra dirs <<<"${LD_LIBRARY_PATH:-}"
    [[ ${#dirs[@]} -gt 0 ]] && printf '%s\n' "${dirs[@]}"
    return 0
}

# Runs in the bundle's Python: the driver's CUDA version, then the first NVRTC and the
# first cuBLAS (in the order given) that this driver supports. Prints tab-separated lines.
PICK_CUDA_LIBS='
import ctypes, glob, os, sys
libcuda, dirs = sys.argv[1], list(dict.fromkeys(d for d in sys.argv[2:] if os.path.isdir(d)))
def out(*fields):
    print("\t".join(str(f) for f in fields))
driver = None
try:
    v = ctypes.c_int()
    if ctypes.CDLL(libcuda).cuDriverGetVersion(ctypes.byref(v)) == 0:
        driver = (v.value // 1000, v.value % 1000 // 10)
        out("driver", "%d.%d" % driver)
except OSError as exc:
    out("note", "cannot load %s: %s" % (libcuda, exc))
def nvrtc_version(path):
    lib, a, b = ctypes.CDLL(path), ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(a), ctypes.byref(b))
    return (a.value, b.value)
def cublas_version(path):
    lib, v = ctypes.CDLL(path), [ctypes.c_int() for _ in range(3)]
    for i in range(3):
        lib.cublasGetProperty(i, ctypes.byref(v[i]))
    return tuple(x.value for x in v)
checks = (("nvrtc", "libnvrtc.so.*", nvrtc_version, lambda v: v[:2] <= driver),
          ("cublas", "libcublas.so.*", cublas_version, lambda v: v[0] <= driver[0]))
for kind, pattern, version, supported in checks:
    for d in dirs:
        files = sorted(glob.glob(os.path.join(d, pattern)), key=len)
        if not files:
            continue
        try:
            v = version(files[0])
        except (OSError, AttributeError) as exc:
            out("note", "%s: cannot load: %s" % (files[0], exc))
            continue
        text = ".".join(map(str, v))
        if driver is not None and not supported(v):
            out("note", "%s %s is newer than the driver (CUDA %d.%d): skipped" % (files[0], text, *driver))
            continue
        out(kind, d, text, files[0])
        break
'

setup_cuda_libs() {
    local candidates=() kind dir ver file nvrtc_dir="" cublas_dir="" f
    find_libcuda || setup_fail "the NVIDIA driver's libcuda.so.1 was not found (ldconfig, LD_LIBRARY_PATH, /usr/local/nvidia): no NVIDIA driver?"
    note "NVIDIA driver library: $libcuda"
    if command -v nvidia-smi >/dev/null; then
        gpu_info=$(nvidia-smi --query-gpu=index,name,driver_version,compute_cap,memory.total --format=csv,noheader 2>&1 | paste -sd';')
        note "nvidia-smi: $gpu_info"
    fi
    mapfile -t candidates < <({ [[ ${#cuda_dirs[@]} -eq 0 ]] || printf '%s\n' "${cuda_dirs[@]}"; cuda_candidates; } \
                                 | awk 'NF && !seen[$0]++')
    note "folders searched for NVRTC/cuBLAS: ${candidates[*]:-none}"
    while IFS=$'\t' read -r kind dir ver file; do
        case $kind in
            driver) note "driver supports CUDA $dir" ;;
            nvrtc) nvrtc_dir=$dir; note "NVRTC $ver: $file" ;;
            cublas) cublas_dir=$dir; note "cuBLAS $ver: $file" ;;
            *) note "$dir" ;;
        esac
    done < <(env -i PATH=/usr/bin:/bin HOME="$work/home" PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1 \
                 LD_LIBRARY_PATH="$libdirs${extra_ld:+:$extra_ld}" \
                 "$python" -c "$PICK_CUDA_LIBS" "$libcuda" "${candidates[@]}" 2>&1)
    [[ -n $nvrtc_dir ]] || setup_fail "no usable NVRTC (libnvrtc.so.*) found; give its folder with --cuda-libs DIR"
    [[ -n $cublas_dir ]] || setup_fail "no usable cuBLAS (libcublas.so.*) found; give its folder with --cuda-libs DIR"
    # One folder of links to all of them: libnvrtc finds its builtins and libcublas its
    # libcublasLt through $ORIGIN, which is the folder of the link as opened.
    mkdir -p "$work/cuda-libs"
    for f in "$nvrtc_dir"/libnvrtc* "$cublas_dir"/libcublas*; do
        [[ -e $work/cuda-libs/${f##*/} ]] || ln -s "$f" "$work/cuda-libs/${f##*/}"
    done
    cuda_env=("XOR_GPU_CUDA_LIBS=$work/cuda-libs")
}
if [[ $device == cuda* ]]; then
    setup_cuda_libs
fi

# --- the clean environment of every step --------------------------------------------
# Nothing of the caller's Python leaks in: env -i, the bundle's python first on PATH,
# no user site. PYTHONHASHSEED=0 keeps Theano's compile-cache keys stable.
cat >"$work/bin/python3" <<EOF
#!/bin/sh
exec "$python" "\$@"
EOF
cat >"$work/bin/xor-gpu" <<EOF
#!/bin/sh
exec "$python" -m xor_gpu "\$@"
EOF
chmod +x "$work/bin/python3" "$work/bin/xor-gpu"
ln -s python3 "$work/bin/python"
step_env=(
    "HOME=$work/home" "TMPDIR=$work/tmp" LANG=C.UTF-8 LC_ALL=C.UTF-8
    "PATH=$work/bin:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
    "LD_LIBRARY_PATH=$libdirs${extra_ld:+:$extra_ld}"
    PYTHONNOUSERSITE=1 PYTHONHASHSEED=0 PYTHONUNBUFFERED=1 "PYTHONPYCACHEPREFIX=$work/pycache"
    MPLBACKEND=Agg "MPLCONFIGDIR=$work/mpl"
    "XOR_GPU_COMPILEDIR=$cache/theano" "POCL_CACHE_DIR=$cache/pocl" "XOR_GPU_MANIFEST=$bundle_dir/MANIFEST.json"
    "${cuda_env[@]}"
)
for v in USER LOGNAME TERM CUDA_VISIBLE_DEVICES CUDA_DEVICE_ORDER NVIDIA_VISIBLE_DEVICES \
         OCL_ICD_VENDORS OCL_ICD_FILENAMES POCL_DEVICES XOR_GPU_DEBUG; do
    [[ -n ${!v:-} ]] && step_env+=("$v=${!v}")
done
in_env() { env -i "${step_env[@]}" "$@"; }

# Theano: the package adds these cxxflags after its own portable -march flags. The bundle's
# headers and libraries come first: Debian's python3.11/pyconfig.h includes
# <x86_64-linux-gnu/python3.11/pyconfig.h>, which only -I<root>/usr/include finds, and
# Theano's own -L names the build host's LIBDIR.
theano_flags="gcc.cxxflags=-I$root/usr/include -L$root/usr/lib/x86_64-linux-gnu -L$root/usr/lib"
step_env+=("THEANO_FLAGS=$theano_flags")

# What runs, recorded for the summary: the interpreter and where each module came from.
in_env "$python" - "$work/environment.json" "$gxx" "$gpu_info" <<'EOF' || setup_fail "the bundle's Python cannot import its stack (see above)"
import json, os, platform, subprocess, sys
import numpy, pygpu, xor_gpu
import pygpu.gpuarray  # maps libgpuarray
maps = open("/proc/self/maps").read().split()
env = {
    "sys_executable": sys.executable,
    "sys_prefix": sys.prefix,
    "python_version": platform.python_version(),
    "modules": {m.__name__: m.__file__ for m in (numpy, pygpu, xor_gpu)},
    "libgpuarray": sorted({p for p in maps if "libgpuarray" in p}),
    "gxx": sys.argv[2],
    "nvidia_smi": sys.argv[3] or None,
    "gxx_version": subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
    "theano_flags": os.environ.get("THEANO_FLAGS"),
    "ld_library_path": os.environ.get("LD_LIBRARY_PATH"),
    "xor_gpu_cuda_libs": {f: os.path.realpath(os.path.join(d, f)) for d in [os.environ.get("XOR_GPU_CUDA_LIBS")] if d
                          for f in sorted(os.listdir(d))},
}
json.dump(env, open(sys.argv[1], "w"), indent=2)
print("python:", env["sys_executable"], env["python_version"])
print("libgpuarray:", *env["libgpuarray"])
print("g++:", env["gxx"], "-", env["gxx_version"])
EOF

# --- the steps ----------------------------------------------------------------------
: >"$work/steps.tsv"
run_step() {
    local name=$1 t0=$SECONDS rc
    shift
    printf '\n===== %s: %s\n' "$name" "$*"
    (cd "$bundle_dir/app" && in_env timeout -k 20 "$step_timeout" "$@")
    rc=$?
    ((rc == 124)) && echo "run.sh: $name stopped after $step_timeout s (--step-timeout)"
    printf '===== %s: exit %d after %d s\n' "$name" "$rc" "$((SECONDS - t0))"
    printf '%s\t%d\t%d\n' "$name" "$rc" "$((SECONDS - t0))" >>"$work/steps.tsv"
}

train_args=(--device "$device" --check --json "$out/train.json")
parity_args=(--devices "cpu,$device" --json "$out/parity.json")
if in_env "$python" -c 'import matplotlib' 2>/dev/null; then
    train_args+=(--plot "$out/train.png")
    parity_args+=(--plot "$out/parity.png")
else
    note "this bundle has no matplotlib (built with --no-plot): no plots"
fi
[[ -n $steps ]] && parity_args+=(--steps "$steps")
# The tests take their device from THEANO_FLAGS (as tox sets it); on cuda a missing GPU
# fails them instead of skipping them.
test_env=("THEANO_FLAGS=$theano_flags,device=$device,floatX=float32")
[[ $device == cuda* ]] && test_env+=(XOR_GPU_REQUIRE_GPU=1)

if [[ $setup_only == 0 ]]; then
    run_step doctor "$python" -m xor_gpu doctor --device "$device" --json "$out/doctor.json"
    run_step train "$python" -m xor_gpu train "${train_args[@]}"
    run_step parity "$python" -m xor_gpu parity "${parity_args[@]}"
    run_step tests env "${test_env[@]}" "$python" -m pytest tests -m "$tests_expr" -p no:cacheprovider -rfEs \
        --junitxml "$work/tests.xml"
fi

# --- summary ------------------------------------------------------------------------
printf '\n===== summary\n'
in_env "$python" - "$work" "$out" "$device" <<'EOF'
import json, os, sys
import xml.etree.ElementTree as ET
work, out, device = sys.argv[1:4]
def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
steps = []
for line in open(os.path.join(work, "steps.tsv")):
    name, rc, seconds = line.split("\t")
    steps.append({"step": name, "exit_status": int(rc), "seconds": int(seconds)})
summary = {"schema": "xor_gpu.bundle_check/1", "device": device,
           "passed": all(s["exit_status"] == 0 for s in steps), "steps": steps,
           "environment": load(os.path.join(work, "environment.json")),
           "manifest": load(os.path.join(os.environ["XOR_GPU_MANIFEST"]))}
lines = [f"{s['step']:<8} {'ok' if s['exit_status'] == 0 else 'FAIL (exit %d)' % s['exit_status']:<14} {s['seconds']:>4} s"
         for s in steps]
train = load(os.path.join(out, "train.json"))
if train:
    summary["train"] = {k: train.get(k) for k in ("device", "converged", "final_loss", "predictions",
                                                   "compile_seconds", "train_seconds", "steps_per_second")}
    lines.append(f"train: {train['device']['active']} ({train['device']['name']}), converged "
                 f"{'yes' if train['converged'] else 'NO'}, final loss {train['final_loss']:.6g}, "
                 f"{train['steps_per_second']:,.0f} steps/s")
parity = load(os.path.join(out, "parity.json"))
if parity:
    summary["parity"] = {k: parity.get(k) for k in ("devices", "passed", "differences", "failures", "tolerances")}
    for d, diff in parity.get("differences", {}).items():
        lines.append(f"parity: {d} vs {parity['reference']}: max |prediction diff| {diff['max_abs_prediction_diff']:.3g}, "
                     f"max relative loss diff {diff['max_rel_loss_diff']:.3g} -> {'PASS' if parity['passed'] else 'FAIL'}")
    for d, f in parity.get("failures", {}).items():
        lines.append(f"parity: {d} failed (exit {f['exit_status']}): {f['error']}")
try:
    suite = ET.parse(os.path.join(work, "tests.xml")).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    summary["tests"] = counts
    lines.append("tests: {tests} run, {failures} failed, {errors} errors, {skipped} skipped".format(**counts))
except (OSError, ET.ParseError, AttributeError):
    pass
with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
    f.write("\n")
print("\n".join(lines))
EOF
failed=$(awk -F'\t' '$2 != 0 {printf "%s%s", sep, $1; sep=", "}' "$work/steps.tsv")
if [[ -n $failed ]]; then
    note "RESULT: FAIL ($failed); log and reports in $out"
    exit 1
fi
note "RESULT: PASS$([[ $setup_only == 1 ]] && echo ' (setup only)'); log and reports in $out"
exit 0
