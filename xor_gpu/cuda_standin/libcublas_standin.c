/* xor_gpu's stand-in for cuBLAS (libcublas.so), for `xor-gpu doctor --device cuda
 * --compile-only`: every function libgpuarray 0.7.6 looks up is here, records its call and
 * returns success without computing anything (there is no device memory to compute on).
 * Whether the real cuBLAS has these names is checked separately, by name, against the
 * library the CUDA library policy chose (xor_gpu/compile_only.py).
 *
 * Environment: XOR_GPU_STANDIN_RECORD, the folder whose calls.tsv gets "cublas\tNAME" lines.
 */
#include <stdio.h>
#include <stdlib.h>

const char xor_gpu_cuda_standin[] = "xor_gpu cuBLAS stand-in: records calls, computes nothing";

/* The names libgpuarray 0.7.6 dlsyms in libcublas.so; a trailing '?' marks the ones it
 * treats as optional (it goes on without them). */
const char *const xor_gpu_cublas_names[] = {
    "cublasCreate_v2", "cublasDestroy_v2", "cublasSetStream_v2", "cublasSetPointerMode_v2",
    "cublasGetPointerMode_v2", "cublasSetAtomicsMode", "cublasSdot_v2", "cublasDdot_v2",
    "cublasSgemm_v2", "cublasDgemm_v2", "cublasSgemv_v2", "cublasDgemv_v2", "cublasSger_v2",
    "cublasDger_v2", "cublasSgemmBatched", "cublasDgemmBatched",
    "cublasSgemmEx?", "cublasGemmEx?", "cublasHgemmStridedBatched?", "cublasSgemmStridedBatched?",
    "cublasDgemmStridedBatched?", NULL,
};

static void note(const char *name) {
    const char *dir = getenv("XOR_GPU_STANDIN_RECORD");
    char path[4200];
    FILE *f;
    if (!dir) return;
    snprintf(path, sizeof path, "%s/calls.tsv", dir);
    f = fopen(path, "a");
    if (!f) return;
    fprintf(f, "cublas\t%s\n", name);
    fclose(f);
}

static int handle;

int cublasCreate_v2(void **h) { note("cublasCreate_v2"); *h = &handle; return 0; }
int cublasGetPointerMode_v2(void *h, int *mode) { (void)h; note("cublasGetPointerMode_v2"); *mode = 0; return 0; }

/* The rest only record: their arguments are ignored (the caller cleans up its own). */
#define RECORDS(name) int name(void) { note(#name); return 0; }
RECORDS(cublasDestroy_v2) RECORDS(cublasSetStream_v2) RECORDS(cublasSetPointerMode_v2)
RECORDS(cublasSetAtomicsMode) RECORDS(cublasSdot_v2) RECORDS(cublasDdot_v2)
RECORDS(cublasSgemm_v2) RECORDS(cublasDgemm_v2) RECORDS(cublasSgemv_v2) RECORDS(cublasDgemv_v2)
RECORDS(cublasSger_v2) RECORDS(cublasDger_v2) RECORDS(cublasSgemmBatched) RECORDS(cublasDgemmBatched)
RECORDS(cublasSgemmEx) RECORDS(cublasGemmEx) RECORDS(cublasHgemmStridedBatched)
RECORDS(cublasSgemmStridedBatched) RECORDS(cublasDgemmStridedBatched)
