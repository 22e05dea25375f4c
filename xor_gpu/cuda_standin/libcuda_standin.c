/* xor_gpu's stand-in for the NVIDIA driver (libcuda.so), for `xor-gpu doctor --device cuda
 * --compile-only`: one GPU of the compute capability asked for, device memory that is host
 * memory, modules that are recorded instead of loaded, kernel launches that do nothing.
 *
 * It answers the driver functions libgpuarray 0.7.6 looks up, so that libgpuarray's CUDA
 * backend, Theano and the real NVRTC run up to the first kernel launch on a machine without
 * a GPU. It is loaded only through the folder `xor_gpu.compile_only` puts first on
 * LD_LIBRARY_PATH; a real run that finds it loaded refuses (xor_gpu/cuda_standin/__init__.py).
 *
 * Environment (set by xor_gpu.compile_only):
 *   XOR_GPU_STANDIN_CC      compute capability, "MAJOR.MINOR" (default 9.0)
 *   XOR_GPU_STANDIN_DRIVER  the CUDA version the driver reports, as cuDriverGetVersion encodes
 *                           it (13000 for 13.0; default 12040): the target node's
 *   XOR_GPU_STANDIN_RECORD  folder for the record: ptx-N.ptx per module, calls.tsv
 * calls.tsv lines: "module\tN\tBYTES", "function\tN\tNAME", "launch\tNAME\tGRID\tBLOCK",
 * "missing\tN\tNAME" (a kernel name the module does not define).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct { char reserved[64]; } CUipcMemHandle;

enum { OK = 0, INVALID_VALUE = 1, INVALID_IMAGE = 200, NOT_FOUND = 500, NOT_SUPPORTED = 801 };

/* The marker a real run looks for: this process runs on the stand-in, not on a GPU. */
const char xor_gpu_cuda_standin[] = "xor_gpu CUDA stand-in driver: compiles only, runs nothing";

static int cc_major = 9, cc_minor = 0, modules = 0;
static char record[4096];
static const unsigned long long TOTAL_MEMORY = 80ULL << 30;

struct module { int id; char *ptx; };
struct function { int module; char name[256]; };
struct link { int id; char *ptx; size_t size; char image[64]; };

static void note(const char *fmt, const char *a, const char *b, const char *c) {
    char path[4200];
    FILE *f;
    if (!record[0]) return;
    snprintf(path, sizeof path, "%s/calls.tsv", record);
    f = fopen(path, "a");
    if (!f) return;
    fprintf(f, fmt, a, b, c);
    fclose(f);
}

CUresult cuInit(unsigned int flags) {
    const char *cc = getenv("XOR_GPU_STANDIN_CC"), *dir = getenv("XOR_GPU_STANDIN_RECORD");
    (void)flags;
    if (cc && sscanf(cc, "%d.%d", &cc_major, &cc_minor) != 2) return INVALID_VALUE;
    if (dir) snprintf(record, sizeof record, "%s", dir);
    return OK;
}

/* The target node's driver (compile_only chooses NVRTC for it), else CUDA 12.4's. */
CUresult cuDriverGetVersion(int *version) {
    const char *given = getenv("XOR_GPU_STANDIN_DRIVER");
    *version = given ? atoi(given) : 12040;
    return OK;
}

CUresult cuGetErrorName(CUresult error, const char **text) {
    *text = error == OK ? "CUDA_SUCCESS" : "CUDA_ERROR_STANDIN";
    return OK;
}

CUresult cuGetErrorString(CUresult error, const char **text) {
    *text = error == OK ? "no error" : "xor_gpu's CUDA stand-in driver refused the call";
    return OK;
}

CUresult cuDeviceGet(CUdevice *device, int ordinal) {
    if (ordinal != 0) return INVALID_VALUE;
    *device = 0;
    return OK;
}

CUresult cuDeviceGetCount(int *count) { *count = 1; return OK; }

CUresult cuDeviceGetName(char *name, int len, CUdevice dev) {
    (void)dev;
    snprintf(name, (size_t)len, "compile-only sm_%d%d", cc_major, cc_minor);
    return OK;
}

CUresult cuDeviceGetPCIBusId(char *bus, int len, CUdevice dev) {
    (void)dev;
    snprintf(bus, (size_t)len, "0000:00:00.0");
    return OK;
}

/* The attributes libgpuarray and Theano ask for, with the values of a recent data-centre GPU. */
CUresult cuDeviceGetAttribute(int *value, int attribute, CUdevice dev) {
    (void)dev;
    switch (attribute) {
    case 1: case 2: case 3: *value = 1024; break;     /* threads per block, block dims x, y */
    case 4: *value = 64; break;                       /* block dim z */
    case 5: *value = 2147483647; break;               /* grid dim x */
    case 6: case 7: *value = 65535; break;            /* grid dims y, z */
    case 8: *value = 49152; break;                    /* shared memory per block */
    case 9: *value = 65536; break;                    /* constant memory */
    case 10: *value = 32; break;                      /* warp size */
    case 12: *value = 65536; break;                   /* registers per block */
    case 13: *value = 1755000; break;                 /* clock rate, kHz */
    case 16: *value = 132; break;                     /* multiprocessors */
    case 19: case 41: *value = 1; break;              /* can map host memory, unified addressing */
    case 75: *value = cc_major; break;
    case 76: *value = cc_minor; break;
    default: *value = 0;
    }
    return OK;
}

static int primary_active = 0;
static unsigned int primary_flags = 0;
static int the_context;

CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active) {
    (void)dev;
    *flags = primary_flags;
    *active = primary_active;
    return OK;
}
CUresult cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags) { (void)dev; primary_flags = flags; return OK; }
CUresult cuDevicePrimaryCtxRetain(void **ctx, CUdevice dev) { (void)dev; primary_active = 1; *ctx = &the_context; return OK; }
CUresult cuDevicePrimaryCtxRelease(CUdevice dev) { (void)dev; return OK; }
CUresult cuCtxGetDevice(CUdevice *dev) { *dev = 0; return OK; }
CUresult cuCtxPushCurrent(void *ctx) { (void)ctx; return OK; }
CUresult cuCtxPushCurrent_v2(void *ctx) { (void)ctx; return OK; }
CUresult cuCtxPopCurrent(void **ctx) { if (ctx) *ctx = &the_context; return OK; }
CUresult cuCtxPopCurrent_v2(void **ctx) { if (ctx) *ctx = &the_context; return OK; }

/* Modules: NVRTC's PTX arrives at cuLinkAddData; cuLinkComplete hands back an image that
 * names the recorded module, which cuModuleLoadData then "loads". */
CUresult cuLinkCreate(unsigned int n, int *options, void **values, void **state) {
    (void)n; (void)options; (void)values;
    *state = calloc(1, sizeof(struct link));
    return *state ? OK : INVALID_VALUE;
}

CUresult cuLinkAddData(void *state, int type, void *data, size_t size, const char *name,
                       unsigned int n, int *options, void **values) {
    struct link *l = state;
    (void)name; (void)n; (void)options; (void)values;
    if (type != 1 || l->ptx) return NOT_SUPPORTED;    /* CU_JIT_INPUT_PTX, once */
    l->ptx = malloc(size + 1);
    if (!l->ptx) return INVALID_VALUE;
    memcpy(l->ptx, data, size);
    l->ptx[size] = 0;
    l->size = strlen(l->ptx);
    return OK;
}

static int record_module(const char *ptx) {
    char path[4200], id[16], bytes[32];
    FILE *f;
    int n = ++modules;
    snprintf(id, sizeof id, "%d", n);
    snprintf(bytes, sizeof bytes, "%zu", strlen(ptx));
    if (record[0]) {
        snprintf(path, sizeof path, "%s/ptx-%d.ptx", record, n);
        f = fopen(path, "w");
        if (f) { fputs(ptx, f); fclose(f); }
    }
    note("module\t%s\t%s%s\n", id, bytes, "");
    return n;
}

CUresult cuLinkComplete(void *state, void **image, size_t *size) {
    struct link *l = state;
    if (!l->ptx) return INVALID_VALUE;
    l->id = record_module(l->ptx);
    snprintf(l->image, sizeof l->image, "xor_gpu-standin-image %d", l->id);
    *image = l->image;
    *size = strlen(l->image) + 1;
    return OK;
}

CUresult cuLinkDestroy(void *state) {
    struct link *l = state;
    free(l->ptx);
    free(l);
    return OK;
}

static char *ptx_of(int id) {
    char path[4200], *buf;
    long n;
    FILE *f;
    snprintf(path, sizeof path, "%s/ptx-%d.ptx", record, id);
    f = fopen(path, "r");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = calloc(1, (size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    return buf;
}

CUresult cuModuleLoadData(void **module, const void *image) {
    struct module *m;
    int id;
    const char *text = image;
    if (sscanf(text, "xor_gpu-standin-image %d", &id) != 1) {
        if (!strstr(text, ".version") || !strstr(text, ".target"))
            return INVALID_IMAGE;                     /* a cubin: nothing to read it with */
        id = record_module(text);                     /* PTX given directly */
    }
    m = calloc(1, sizeof *m);
    if (!m) return INVALID_VALUE;
    m->id = id;
    m->ptx = ptx_of(id);
    *module = m;
    return OK;
}

CUresult cuModuleLoadDataEx(void **module, const void *image, unsigned int n, int *options, void **values) {
    (void)n; (void)options; (void)values;
    return cuModuleLoadData(module, image);
}

CUresult cuModuleUnload(void *module) {
    struct module *m = module;
    free(m->ptx);
    free(m);
    return OK;
}

/* A kernel name the PTX does not define fails as the real driver would. */
CUresult cuModuleGetFunction(void **function, void *module, const char *name) {
    struct module *m = module;
    struct function *f;
    char id[16], entry[300];
    snprintf(id, sizeof id, "%d", m->id);
    snprintf(entry, sizeof entry, ".entry %s(", name);
    if (m->ptx && !strstr(m->ptx, entry)) {
        note("missing\t%s\t%s%s\n", id, name, "");
        return NOT_FOUND;
    }
    f = calloc(1, sizeof *f);
    if (!f) return INVALID_VALUE;
    f->module = m->id;
    snprintf(f->name, sizeof f->name, "%s", name);
    note("function\t%s\t%s%s\n", id, name, "");
    *function = f;
    return OK;
}

CUresult cuFuncGetAttribute(int *value, int attribute, void *function) {
    (void)function;
    *value = attribute == 0 ? 1024 : 0;               /* max threads per block */
    return OK;
}

CUresult cuLaunchKernel(void *function, unsigned int gx, unsigned int gy, unsigned int gz,
                        unsigned int bx, unsigned int by, unsigned int bz, unsigned int shared,
                        void *stream, void **params, void **extra) {
    struct function *f = function;
    char grid[64], block[64];
    (void)shared; (void)stream; (void)params; (void)extra;
    snprintf(grid, sizeof grid, "%ux%ux%u", gx, gy, gz);
    snprintf(block, sizeof block, "%ux%ux%u", bx, by, bz);
    note("launch\t%s\t%s\t%s\n", f->name, grid, block);
    return OK;
}

/* Memory: device pointers are host pointers. */
CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total) { *free_bytes = *total = TOTAL_MEMORY; return OK; }
CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t size) {
    void *p = calloc(1, size ? size : 1);
    if (!p) return 2;                                 /* CUDA_ERROR_OUT_OF_MEMORY */
    *ptr = (CUdeviceptr)(uintptr_t)p;
    return OK;
}
CUresult cuMemAlloc(CUdeviceptr *ptr, size_t size) { return cuMemAlloc_v2(ptr, size); }
CUresult cuMemFree_v2(CUdeviceptr ptr) { free((void *)(uintptr_t)ptr); return OK; }
CUresult cuMemAllocHost_v2(void **p, size_t size) { *p = calloc(1, size ? size : 1); return *p ? OK : 2; }
CUresult cuMemAllocHost(void **p, size_t size) { return cuMemAllocHost_v2(p, size); }
CUresult cuMemFreeHost(void *p) { free(p); return OK; }

#define PTR(p) ((void *)(uintptr_t)(p))
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) { memcpy(PTR(dst), src, n); return OK; }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, void *s) { (void)s; memcpy(PTR(dst), src, n); return OK; }
CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, void *s) { (void)s; memcpy(dst, PTR(src), n); return OK; }
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, void *s) { (void)s; memmove(PTR(dst), PTR(src), n); return OK; }
CUresult cuMemcpyPeerAsync(CUdeviceptr dst, void *dc, CUdeviceptr src, void *sc, size_t n, void *s) {
    (void)dc; (void)sc; (void)s;
    memmove(PTR(dst), PTR(src), n);
    return OK;
}
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t n, void *s) { (void)s; memset(PTR(dst), value, n); return OK; }

/* Events and streams: everything is done by the time a call returns. */
static int token;
CUresult cuEventCreate(void **event, unsigned int flags) { (void)flags; *event = &token; return OK; }
CUresult cuEventRecord(void *event, void *stream) { (void)event; (void)stream; return OK; }
CUresult cuEventSynchronize(void *event) { (void)event; return OK; }
CUresult cuEventDestroy_v2(void *event) { (void)event; return OK; }
CUresult cuStreamCreate(void **stream, unsigned int flags) { (void)flags; *stream = &token; return OK; }
CUresult cuStreamWaitEvent(void *stream, void *event, unsigned int flags) { (void)stream; (void)event; (void)flags; return OK; }
CUresult cuStreamSynchronize(void *stream) { (void)stream; return OK; }
CUresult cuStreamDestroy_v2(void *stream) { (void)stream; return OK; }

CUresult cuIpcGetMemHandle(CUipcMemHandle *handle, CUdeviceptr ptr) { (void)handle; (void)ptr; return NOT_SUPPORTED; }
CUresult cuIpcOpenMemHandle(CUdeviceptr *ptr, CUipcMemHandle handle, unsigned int flags) { (void)ptr; (void)handle; (void)flags; return NOT_SUPPORTED; }
CUresult cuIpcCloseMemHandle(CUdeviceptr ptr) { (void)ptr; return NOT_SUPPORTED; }
