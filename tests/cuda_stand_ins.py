"""Stand-ins for NVIDIA's libraries, built with gcc: they answer the version queries the
CUDA library policy makes (nvrtcVersion, cublasGetProperty, cuDriverGetVersion) and load
their companions the way the real ones do, so the policy is tested through ctypes without
a GPU or a CUDA toolkit; and libraries with planted faults for `doctor --compile-only`."""
import subprocess

# What each NVRTC answers to nvrtcGetSupportedArchs, as recorded from NVIDIA's wheels: 12.4,
# 12.9 and 13.0 are checked against the real wheels in the gpu env (tests/test_compile_only.py),
# 12.8 was measured once; 12.0 (the CUDA 12 of the stand-ins below) compiles for what 12.4 does.
NVRTC_ARCHS = {
    (12, 0): (50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90),
    (12, 4): (50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90),
    (12, 8): (50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90, 100, 101, 120),
    (12, 9): (50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90, 100, 101, 103, 120, 121),
    (13, 0): (75, 80, 86, 87, 88, 89, 90, 100, 103, 110, 120, 121),
}


def build(folder, name, body, deps=(), soname=None):
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / f".{name}.c"
    src.write_text(body + "\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(folder / name), f"-Wl,-soname,{soname or name}", str(src),
                    "-Wl,-rpath,$ORIGIN", f"-L{folder}", *[f"-l:{d}" for d in deps]], check=True)
    src.unlink()
    return folder / name


def nvrtc(folder, major, minor, archs=None):
    """libnvrtc.so.MAJOR reporting MAJOR.MINOR (and with `archs`, answering
    nvrtcGetSupportedArchs with them, as NVRTC 11.2 and later do); like the real one it needs
    its builtins library, found through $ORIGIN, and nvrtcStandIn() returns what the builtins say."""
    builtins = f"libnvrtc-builtins.so.{major}.{minor}"
    build(folder, builtins, f"int builtins(void) {{ return {major * 100 + minor}; }}")
    supported = "" if archs is None else (
        f"static const int archs[] = {{{', '.join(map(str, archs))}}};\n"
        "int nvrtcGetNumSupportedArchs(int *n) { *n = sizeof archs / sizeof *archs; return 0; }\n"
        "int nvrtcGetSupportedArchs(int *out) { for (unsigned i = 0; i < sizeof archs / sizeof *archs; i++) "
        "out[i] = archs[i]; return 0; }\n")
    return build(folder, f"libnvrtc.so.{major}",
                 f"int builtins(void); int nvrtcStandIn(void) {{ return builtins(); }}\n"
                 f"int nvrtcVersion(int *a, int *b) {{ *a = {major}; *b = {minor}; return 0; }}\n" + supported,
                 deps=[builtins])


def cublas(folder, major, minor, patch, names=()):
    """libcublas.so.MAJOR reporting MAJOR.MINOR.PATCH, needing its libcublasLt; it also
    exports `names` (functions that do nothing)."""
    lt = f"libcublasLt.so.{major}"
    build(folder, lt, "int lt(void) { return 7; }")
    return build(folder, f"libcublas.so.{major}",
                 "int lt(void); int cublasStandIn(void) { return lt(); }\n"
                 f"int cublasGetProperty(int t, int *v) {{ int p[3] = {{{major}, {minor}, {patch}}}; "
                 "*v = p[t]; return 0; }\n" + "".join(f"int {name}(void) {{ return 0; }}\n" for name in names),
                 deps=[lt])


def cudnn(folder, version):
    """libcudnn.so.MAJOR whose cudnnGetVersion() returns `version`, in cuDNN's own encoding
    (9.1.0 is 90100, 8.9.7 is 8907)."""
    major = version // 10000 if version >= 90000 else version // 1000
    return build(folder, f"libcudnn.so.{major}", f"#include <stddef.h>\nsize_t cudnnGetVersion(void) {{ return {version}; }}")


def nvrtc_planting(folder, real, marker, line):
    """libnvrtc.so.12 that hands every call to the real NVRTC at `real`, except that a
    kernel source containing `marker` gets `line` put before it: the real compiler then
    judges a source of libgpuarray's with a planted error."""
    calls = {
        "nvrtcVersion": ("int *a, int *b", "a, b"),
        "nvrtcGetErrorString": ("int r", "r"),
        "nvrtcCompileProgram": ("void *p, int n, const char *const *o", "p, n, o"),
        "nvrtcDestroyProgram": ("void **p", "p"),
        "nvrtcGetPTXSize": ("void *p, size_t *s", "p, s"),
        "nvrtcGetPTX": ("void *p, char *x", "p, x"),
        "nvrtcGetProgramLogSize": ("void *p, size_t *s", "p, s"),
        "nvrtcGetProgramLog": ("void *p, char *x", "p, x"),
    }
    body = ["#include <dlfcn.h>", "#include <stdlib.h>", "#include <string.h>",
            f'static void *f(const char *n) {{ static void *lib; if (!lib) lib = dlopen("{real}", RTLD_NOW); '
            "return dlsym(lib, n); }"]
    for name, (params, args) in calls.items():
        ret = "const char *" if name == "nvrtcGetErrorString" else "int"
        body.append(f'{ret} {name}({params}) {{ return (({ret} (*)({params}))f("{name}"))({args}); }}')
    body.append(
        "int nvrtcCreateProgram(void **p, const char *src, const char *name, int n, const char *const *h, "
        "const char *const *i) { char *planted = NULL; int r;\n"
        f'  if (strstr(src, "{marker}")) {{ planted = malloc(strlen(src) + {len(line) + 2}); '
        f'strcpy(planted, "{line}\\n"); strcat(planted, src); src = planted; }}\n'
        "  r = ((int (*)(void **, const char *, const char *, int, const char *const *, const char *const *))"
        'f("nvrtcCreateProgram"))(p, src, name, n, h, i); free(planted); return r; }')
    return build(folder, "libnvrtc.so.12", "\n".join(body), deps=())


def nvrtc_recording(folder, major, minor, archs):
    """libnvrtc.so.MAJOR of MAJOR.MINOR compiling for `archs`, whose nvrtcCompileProgram
    appends the options it receives, one call a line, to the file XOR_GPU_TEST_NVRTC_OPTIONS
    names, and succeeds."""
    return build(folder, f"libnvrtc.so.{major}", "\n".join([
        "#include <stdio.h>", "#include <stdlib.h>",
        f"int nvrtcVersion(int *a, int *b) {{ *a = {major}; *b = {minor}; return 0; }}",
        f"static const int archs[] = {{{', '.join(map(str, archs))}}};",
        "int nvrtcGetNumSupportedArchs(int *n) { *n = sizeof archs / sizeof *archs; return 0; }",
        "int nvrtcGetSupportedArchs(int *out) { for (unsigned i = 0; i < sizeof archs / sizeof *archs; i++) "
        "out[i] = archs[i]; return 0; }",
        "int nvrtcCompileProgram(void *p, int n, const char *const *o) {",
        '  FILE *f = fopen(getenv("XOR_GPU_TEST_NVRTC_OPTIONS"), "a");',
        '  for (int i = 0; i < n; i++) fprintf(f, "%s%s", i ? "\\t" : "", o[i]);',
        '  fputs("\\n", f); fclose(f); return 0; }']))


def driver(folder, major, minor, gpus=()):
    """The driver's libcuda.so.1, supporting CUDA MAJOR.MINOR, showing GPUs of the compute
    capabilities `gpus` ((major, minor) each), or with none a machine without a GPU (cuInit:
    CUDA_ERROR_NO_DEVICE). Its soname is not libcuda.so.1: loaded in a test process, it must
    not answer for the real one."""
    ccs = ", ".join(f"{{{a}, {b}}}" for a, b in gpus) or "{0, 0}"
    return build(folder, "libcuda.so.1",
                 "#include <stdlib.h>\n"
                 f"int cuDriverGetVersion(int *v) {{ *v = {major * 1000 + minor * 10}; return 0; }}\n"
                 # a current context only where XOR_GPU_TEST_CONTEXT names its device's ordinal
                 'int cuCtxGetDevice(int *d) { const char *c = getenv("XOR_GPU_TEST_CONTEXT"); if (!c) return 201; '
                 "*d = atoi(c); return 0; }\n"
                 f"static const int gpus[][2] = {{{ccs}}}; static const int count = {len(gpus)};\n"
                 "int cuInit(unsigned flags) { return count ? 0 : 100; }\n"
                 "int cuDeviceGetCount(int *n) { *n = count; return 0; }\n"
                 "int cuDeviceGet(int *d, int i) { if (i >= count) return 101; *d = i; return 0; }\n"
                 "int cuDeviceGetAttribute(int *v, int a, int d) { if (a != 75 && a != 76) return 1; "
                 "*v = gpus[d][a - 75]; return 0; }",
                 soname="libcuda-stand-in.so.1")
