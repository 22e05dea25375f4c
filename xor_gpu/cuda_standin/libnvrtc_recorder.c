/* xor_gpu's recording front of NVRTC (libnvrtc.so), for `xor-gpu doctor --device cuda
 * --compile-only`: every call goes to the REAL NVRTC that the CUDA library policy chose
 * (XOR_GPU_STANDIN_NVRTC, opened by its path, so that it finds its builtins beside itself);
 * the options libgpuarray passes to nvrtcCompileProgram are recorded on the way, as
 * "nvrtc\tOPTION OPTION..." lines in XOR_GPU_STANDIN_RECORD/calls.tsv.
 */
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

typedef int nvrtcResult;
typedef void *nvrtcProgram;

const char xor_gpu_cuda_standin[] = "xor_gpu NVRTC recorder: forwards to the real NVRTC";

static void *real(const char *name) {
    static void *lib;
    void *f;
    if (!lib) {
        const char *path = getenv("XOR_GPU_STANDIN_NVRTC");
        lib = path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
        if (!lib) {
            fprintf(stderr, "xor_gpu NVRTC recorder: cannot open the real NVRTC (%s): %s\n",
                    path ? path : "XOR_GPU_STANDIN_NVRTC unset", dlerror());
            abort();
        }
    }
    f = dlsym(lib, name);
    if (!f) {
        fprintf(stderr, "xor_gpu NVRTC recorder: the real NVRTC lacks %s\n", name);
        abort();
    }
    return f;
}

#define FORWARD(ret, name, params, args) \
    ret name params { return ((ret (*) params)real(#name)) args; }

FORWARD(nvrtcResult, nvrtcVersion, (int *major, int *minor), (major, minor))
FORWARD(const char *, nvrtcGetErrorString, (nvrtcResult result), (result))
FORWARD(nvrtcResult, nvrtcCreateProgram, (nvrtcProgram *prog, const char *src, const char *name, int n,
        const char *const *headers, const char *const *names), (prog, src, name, n, headers, names))
FORWARD(nvrtcResult, nvrtcDestroyProgram, (nvrtcProgram *prog), (prog))
FORWARD(nvrtcResult, nvrtcGetPTXSize, (nvrtcProgram prog, size_t *size), (prog, size))
FORWARD(nvrtcResult, nvrtcGetPTX, (nvrtcProgram prog, char *ptx), (prog, ptx))
FORWARD(nvrtcResult, nvrtcGetProgramLogSize, (nvrtcProgram prog, size_t *size), (prog, size))
FORWARD(nvrtcResult, nvrtcGetProgramLog, (nvrtcProgram prog, char *log), (prog, log))

nvrtcResult nvrtcCompileProgram(nvrtcProgram prog, int n, const char *const *options) {
    const char *dir = getenv("XOR_GPU_STANDIN_RECORD");
    char path[4200];
    FILE *f;
    int i;
    if (dir) {
        snprintf(path, sizeof path, "%s/calls.tsv", dir);
        f = fopen(path, "a");
        if (f) {
            fputs("nvrtc\t", f);
            for (i = 0; i < n; i++) fprintf(f, "%s%s", i ? " " : "", options[i]);
            fputs("\n", f);
            fclose(f);
        }
    }
    return ((nvrtcResult (*)(nvrtcProgram, int, const char *const *))real("nvrtcCompileProgram"))(prog, n, options);
}
