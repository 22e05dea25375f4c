"""Stand-ins for NVIDIA's libraries, built with gcc: they answer the version queries the
CUDA library policy makes (nvrtcVersion, cublasGetProperty, cuDriverGetVersion) and load
their companions the way the real ones do, so the policy is tested through ctypes without
a GPU or a CUDA toolkit."""
import subprocess


def build(folder, name, body, deps=(), soname=None):
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / f".{name}.c"
    src.write_text(body + "\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(folder / name), f"-Wl,-soname,{soname or name}", str(src),
                    "-Wl,-rpath,$ORIGIN", f"-L{folder}", *[f"-l:{d}" for d in deps]], check=True)
    src.unlink()
    return folder / name


def nvrtc(folder, major, minor):
    """libnvrtc.so.MAJOR reporting MAJOR.MINOR; like the real one it needs its builtins
    library, found through $ORIGIN, and nvrtcStandIn() returns what the builtins say."""
    builtins = f"libnvrtc-builtins.so.{major}.{minor}"
    build(folder, builtins, f"int builtins(void) {{ return {major * 100 + minor}; }}")
    return build(folder, f"libnvrtc.so.{major}",
                 f"int builtins(void); int nvrtcStandIn(void) {{ return builtins(); }}\n"
                 f"int nvrtcVersion(int *a, int *b) {{ *a = {major}; *b = {minor}; return 0; }}",
                 deps=[builtins])


def cublas(folder, major, minor, patch):
    """libcublas.so.MAJOR reporting MAJOR.MINOR.PATCH, needing its libcublasLt."""
    lt = f"libcublasLt.so.{major}"
    build(folder, lt, "int lt(void) { return 7; }")
    return build(folder, f"libcublas.so.{major}",
                 "int lt(void); int cublasStandIn(void) { return lt(); }\n"
                 f"int cublasGetProperty(int t, int *v) {{ int p[3] = {{{major}, {minor}, {patch}}}; "
                 "*v = p[t]; return 0; }",
                 deps=[lt])


def driver(folder, major, minor):
    """The driver's libcuda.so.1, supporting CUDA MAJOR.MINOR, on a machine without a GPU
    (cuInit: CUDA_ERROR_NO_DEVICE). Its soname is not libcuda.so.1: loaded in a test
    process, it must not answer for the real one."""
    return build(folder, "libcuda.so.1",
                 f"int cuDriverGetVersion(int *v) {{ *v = {major * 1000 + minor * 10}; return 0; }}\n"
                 "int cuInit(unsigned flags) { return 100; }",
                 soname="libcuda-stand-in.so.1")
