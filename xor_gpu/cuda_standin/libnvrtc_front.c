/* xor_gpu's front of NVRTC (libnvrtc.so). libgpuarray 0.7.6 opens "libnvrtc.so"; in xor_gpu's
 * folder of links (xor_gpu/cuda_libs.py) that name is this library where it is needed, and
 * every call goes on to the real NVRTC, linked beside it as libnvrtc-real.so and opened
 * through that folder (so that NVRTC finds its builtins there). It does two things:
 *
 * 1. Compute capability 10 and more (Blackwell): libgpuarray writes "compute_" + major +
 *    minor into a buffer of 11 bytes, so compute_100 arrives cut short, as "-arch compute_10".
 *    Where the architecture option is such a name, and the device of the current context
 *    (else every GPU of the driver, when they are alike) has compute capability 10 or more
 *    and a name that starts with it, the front passes the whole name. Every other option,
 *    and every option below compute capability 10, goes on exactly as given. What it
 *    corrected is kept in xor_gpu_nvrtc_* below, which a run reads (cuda_standin.front_record).
 * 2. For `xor-gpu doctor --compile-only`: with XOR_GPU_STANDIN_RECORD set (a folder), the
 *    options libgpuarray passes are recorded as "nvrtc\tOPTION OPTION..." lines of calls.tsv
 *    there, each correction as "arch\tASKED\tGIVEN", and the log of each compilation that
 *    fails as nvrtc-failure-N.log (libgpuarray hands Theano's ops the error code alone).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvrtcResult;
typedef void *nvrtcProgram;

#define REAL_NAME "libnvrtc-real.so"
#define CUT 10 /* what libgpuarray's buffer keeps of the name: strlen("compute_10") */

const char xor_gpu_nvrtc_front[] = "xor_gpu NVRTC front: forwards to the real NVRTC";
int xor_gpu_nvrtc_arch_fixes;          /* compilations whose architecture it gave in full */
char xor_gpu_nvrtc_arch_asked[32];     /* the name as libgpuarray passed it, e.g. compute_10 */
char xor_gpu_nvrtc_arch_given[32];     /* the name NVRTC got, e.g. compute_100 */

static void *real(const char *name) {
    static void *lib;
    void *f;
    if (!lib) {
        Dl_info self;
        char path[4200];
        const char *slash = NULL;
        if (dladdr((void *)&real, &self) && self.dli_fname) slash = strrchr(self.dli_fname, '/');
        if (slash) {
            snprintf(path, sizeof path, "%.*s/%s", (int)(slash - self.dli_fname), self.dli_fname, REAL_NAME);
            lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        }
        if (!lib) {
            fprintf(stderr, "xor_gpu NVRTC front: cannot open the real NVRTC (%s beside %s): %s\n", REAL_NAME,
                    self.dli_fname ? self.dli_fname : "this library", dlerror());
            abort();
        }
    }
    f = dlsym(lib, name);
    if (!f) {
        fprintf(stderr, "xor_gpu NVRTC front: the real NVRTC lacks %s\n", name);
        abort();
    }
    return f;
}

#define FORWARD(ret, name, params, args) \
    ret name params { return ((ret (*) params)real(#name)) args; }

FORWARD(nvrtcResult, nvrtcVersion, (int *major, int *minor), (major, minor))
FORWARD(nvrtcResult, nvrtcGetNumSupportedArchs, (int *n), (n))
FORWARD(nvrtcResult, nvrtcGetSupportedArchs, (int *archs), (archs))
FORWARD(const char *, nvrtcGetErrorString, (nvrtcResult result), (result))
FORWARD(nvrtcResult, nvrtcCreateProgram, (nvrtcProgram *prog, const char *src, const char *name, int n,
        const char *const *headers, const char *const *names), (prog, src, name, n, headers, names))
FORWARD(nvrtcResult, nvrtcDestroyProgram, (nvrtcProgram *prog), (prog))
FORWARD(nvrtcResult, nvrtcGetPTXSize, (nvrtcProgram prog, size_t *size), (prog, size))
FORWARD(nvrtcResult, nvrtcGetPTX, (nvrtcProgram prog, char *ptx), (prog, ptx))
FORWARD(nvrtcResult, nvrtcGetProgramLogSize, (nvrtcProgram prog, size_t *size), (prog, size))
FORWARD(nvrtcResult, nvrtcGetProgramLog, (nvrtcProgram prog, char *log), (prog, log))

/* The compute capability of the device NVRTC compiles for, asked of the driver libgpuarray
 * loaded (libcuda.so: the NVIDIA driver, or compile-only's stand-in): the current context's
 * device, else the driver's GPUs when they are all alike. 0 when it cannot tell. */
static int device_cc(int *major, int *minor) {
    static void *cu;
    int (*ctx_device)(int *), (*count_of)(int *), (*device_of)(int *, int), (*attribute)(int *, int, int);
    int dev, n, i, other_major, other_minor;
    if (!cu) cu = dlopen("libcuda.so", RTLD_NOW | RTLD_NOLOAD);
    if (!cu) cu = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (!cu) return 0;
    ctx_device = (int (*)(int *))dlsym(cu, "cuCtxGetDevice");
    count_of = (int (*)(int *))dlsym(cu, "cuDeviceGetCount");
    device_of = (int (*)(int *, int))dlsym(cu, "cuDeviceGet");
    attribute = (int (*)(int *, int, int))dlsym(cu, "cuDeviceGetAttribute");
    if (!attribute) return 0;
    if (ctx_device && ctx_device(&dev) == 0)  /* 75, 76: compute capability major, minor */
        return attribute(major, 75, dev) == 0 && attribute(minor, 76, dev) == 0;
    if (!count_of || !device_of || count_of(&n) != 0 || n < 1) return 0;
    for (i = 0; i < n; i++) {
        if (device_of(&dev, i) != 0 || attribute(&other_major, 75, dev) != 0 || attribute(&other_minor, 76, dev) != 0)
            return 0;
        if (i > 0 && (other_major != *major || other_minor != *minor)) return 0;
        *major = other_major;
        *minor = other_minor;
    }
    return 1;
}

/* `value` in full ("compute_100") when it is the device's architecture cut short
 * ("compute_10"), else `value` itself. */
static const char *whole_arch(const char *value, char *whole, size_t size) {
    int major, minor;
    if (strlen(value) != CUT || strncmp(value, "compute_1", 9) != 0) return value;
    if (!device_cc(&major, &minor) || major < 10) return value;
    snprintf(whole, size, "compute_%d%d", major, minor);
    if (strlen(whole) <= CUT || strncmp(whole, value, CUT) != 0) return value;
    return whole;
}

static void record(const char *dir, const char *line) {
    char path[4200];
    FILE *f;
    snprintf(path, sizeof path, "%s/calls.tsv", dir);
    f = fopen(path, "a");
    if (!f) return;
    fputs(line, f);
    fclose(f);
}

static void record_options(const char *dir, int n, const char *const *options) {
    char path[4200];
    FILE *f;
    int i;
    snprintf(path, sizeof path, "%s/calls.tsv", dir);
    f = fopen(path, "a");
    if (!f) return;
    fputs("nvrtc\t", f);
    for (i = 0; i < n; i++) fprintf(f, "%s%s", i ? " " : "", options[i]);
    fputs("\n", f);
    fclose(f);
}

nvrtcResult nvrtcCompileProgram(nvrtcProgram prog, int n, const char *const *options) {
    static int failures;
    const char *dir = getenv("XOR_GPU_STANDIN_RECORD"), **given, *value, *full;
    char whole[32], joined[64], line[128], path[4200], *log;
    size_t size = 0;
    FILE *f;
    int i, fixed = -1;
    nvrtcResult result;
    if (dir) record_options(dir, n, options);
    given = calloc((size_t)(n > 0 ? n : 1), sizeof *given);
    if (!given) return ((nvrtcResult (*)(nvrtcProgram, int, const char *const *))real("nvrtcCompileProgram"))(prog, n, options);
    for (i = 0; i < n; i++) {
        given[i] = options[i];
        /* "-arch NAME" (libgpuarray's), or "-arch=NAME" */
        if (i > 0 && fixed < 0 && (!strcmp(options[i - 1], "-arch") || !strcmp(options[i - 1], "--gpu-architecture"))) {
            full = whole_arch(options[i], whole, sizeof whole);
            if (full != options[i]) { given[i] = full; fixed = i; }
        } else if (fixed < 0 && !strncmp(options[i], "-arch=", 6)) {
            full = whole_arch(options[i] + 6, whole, sizeof whole);
            if (full != options[i] + 6) {
                snprintf(joined, sizeof joined, "-arch=%s", full);
                given[i] = joined;
                fixed = i;
            }
        }
    }
    if (fixed >= 0) {
        value = strchr(options[fixed], '=') ? strchr(options[fixed], '=') + 1 : options[fixed];
        snprintf(xor_gpu_nvrtc_arch_asked, sizeof xor_gpu_nvrtc_arch_asked, "%s", value);
        snprintf(xor_gpu_nvrtc_arch_given, sizeof xor_gpu_nvrtc_arch_given, "%s", whole);
        xor_gpu_nvrtc_arch_fixes++;
        if (dir) {
            snprintf(line, sizeof line, "arch\t%s\t%s\n", value, whole);
            record(dir, line);
        }
    }
    result = ((nvrtcResult (*)(nvrtcProgram, int, const char *const *))real("nvrtcCompileProgram"))(
        prog, n, (const char *const *)given);
    free(given);
    if (result != 0 && dir && nvrtcGetProgramLogSize(prog, &size) == 0 && (log = calloc(1, size + 1))) {
        snprintf(path, sizeof path, "%s/nvrtc-failure-%d.log", dir, ++failures);
        f = fopen(path, "w");
        if (f && nvrtcGetProgramLog(prog, log) == 0) fputs(log, f);
        if (f) fclose(f);
        free(log);
    }
    return result;
}
