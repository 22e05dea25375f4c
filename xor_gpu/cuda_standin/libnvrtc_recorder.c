/* xor_gpu's recording front of NVRTC (libnvrtc.so), for `xor-gpu doctor --device cuda
 * --compile-only`: every call goes to the REAL NVRTC that the CUDA library policy chose
 * (XOR_GPU_STANDIN_NVRTC, opened by its path, so that it finds its builtins beside itself);
 * the options libgpuarray passes to nvrtcCompileProgram are recorded on the way, as
 * "nvrtc\tOPTION OPTION..." lines in XOR_GPU_STANDIN_RECORD/calls.tsv, and the log of each
 * compilation that fails as nvrtc-failure-N.log there.
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

/* Records the options, and the compiler's log when it fails (libgpuarray passes it on only
 * for some callers: Theano's ops get the error code alone). */
nvrtcResult nvrtcCompileProgram(nvrtcProgram prog, int n, const char *const *options) {
    static int failures;
    const char *dir = getenv("XOR_GPU_STANDIN_RECORD");
    char path[4200], *log;
    size_t size = 0;
    FILE *f;
    int i;
    nvrtcResult result;
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
    result = ((nvrtcResult (*)(nvrtcProgram, int, const char *const *))real("nvrtcCompileProgram"))(prog, n, options);
    if (result != 0 && dir && nvrtcGetProgramLogSize(prog, &size) == 0 && (log = calloc(1, size + 1))) {
        snprintf(path, sizeof path, "%s/nvrtc-failure-%d.log", dir, ++failures);
        f = fopen(path, "w");
        if (f && nvrtcGetProgramLog(prog, log) == 0) fputs(log, f);
        if (f) fclose(f);
        free(log);
    }
    return result;
}
