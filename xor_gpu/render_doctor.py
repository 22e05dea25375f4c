"""doctor's text: what it found and each problem with its fix; `doctor --compile-only`'s: what
compiled each kernel and its figures; and the NVIDIA libraries chosen, which both show."""
import json

from xor_gpu.render import cudnn


def _library(library):
    return f"{library.version} {library.path}" if library else "none usable"


def cuda_libs(record):
    """(label, text) lines of the NVIDIA libraries chosen (a CudaLibs), for a person."""
    driver = f"{record.libcuda} (CUDA {record.driver})" if record.libcuda else "none"
    gpus = ", ".join(record.gpus or []) or "no GPU seen: architectures unchecked"
    front = "; libnvrtc.so is xor_gpu's NVRTC front (Blackwell's architecture)" if record.nvrtc_front else ""
    return [("libcuda", driver), ("chosen for", gpus), ("nvrtc", _library(record.nvrtc)),
            ("cublas", _library(record.cublas)), ("cuda libs", (record.folder or "none") + front),
            *(("  note", note) for note in record.notes)]


def doctor(findings):
    """`xor-gpu doctor`'s text: what it found (a Findings), then each problem and its fix."""
    f = findings
    lines = [f"{label:<15} {value}" for label, value in (
        ("python", f.python), ("numpy", f.numpy), ("theano", f.theano), ("xor_gpu", f.xor_gpu), ("pygpu", f.pygpu))]
    blas = f.blas
    lines.append(f"{'cpu':<15} {f.cpu}")
    library = blas.library or ("not loaded (see the problem below)" if blas.problem else "not found")
    lines.append(f"{'blas':<15} {library} ({blas.version or blas.ldflags or 'no ldflags'})")
    if blas.kernels:
        lines.append(f"{'blas kernels':<15} {blas.kernels.family or 'as OpenBLAS detects'} "
                     f"(chosen by {blas.kernels.chosen_by})")
    lines.append(f"{'opencl':<15} {'; '.join(f.opencl_devices) or 'none'}")
    gpus = ", ".join(f.cuda_gpus) or "no GPU"
    lines.append(f"{'cuda driver':<15} {f.cuda_driver + ' (' + gpus + ')' if f.cuda_driver else 'none'}")
    lines += [f"{label:<15} {text}" for label, text in cuda_libs(f.cuda_libs)]
    if f.cudnn:  # absent from findings older than it
        found = f"{f.cudnn.version} {f.cudnn.library}" if f.cudnn.library else "none found"
        lines.append(f"{'cudnn':<15} {found}; Theano uses it: {'yes' if f.cudnn.enabled else 'no'} (dnn.enabled)")
    lines += [f"{name:<15} {status}" for name, status in f.libraries.items()]
    lines.append(f"{'compiledir':<15} {f.compiledir}")
    lines.append(f"{'pocl cache':<15} {f.pocl_cache_dir}")
    if f.manifest:
        m = dict(f.manifest)
        lines.append(f"{'manifest':<15} {m.pop('path')}")
        lines += [f"  {key}: {json.dumps(value) if isinstance(value, (dict, list)) else value}"
                  for key, value in m.items()]
    if f.device:
        lines.append(f"{'device ' + f.device.name:<15} {'usable' if not f.device.error else 'NOT usable'}")
    problems = f.advice()
    if problems:
        lines.append("")
        lines += [f"problem: {p.what}\n    fix: {p.fix}" for p in problems]
    return "\n".join(lines)


def compile_only(report):
    """`doctor --compile-only`'s text (a CompileOnly): what compiled each kernel, its figures."""
    fixed, ptxas = report.nvrtc_arch, report.ptxas
    asked = f"libgpuarray asked NVRTC for {report.libgpuarray_arch or 'nothing'}" + (
        f", given {fixed.compiled_for} by xor_gpu's NVRTC front" if fixed else "")
    driver = report.driver
    lines = [f"compile-only   {report.arch} (compute capability {report.compute_capability}), {asked}",
             f"driver         {f'CUDA {driver.cuda} ({driver.from_})' if driver.cuda else driver.from_}",
             f"nvrtc          {report.nvrtc.version} {report.nvrtc.path}",
             f"cublas         {report.cublas.version} {report.cublas.path}: {len(report.cublas.names.resolved)} names "
             f"found, {len(report.cublas.names.missing)} missing",
             "ptxas          " + (f"{ptxas.version} {ptxas.path}" if ptxas and ptxas.path
                                      else (ptxas and ptxas.note) or "none"),
             f"cudnn          {cudnn(report.cudnn)}"]
    lines += [f"  note: {note}" for note in report.cuda_libs_notes + ((ptxas and ptxas.skipped) or [])]
    lines.append(f"kernels        {len(report.kernels)}")
    for k in report.kernels:
        figures = (f"{k.registers} registers, {k.spill_stores}/{k.spill_loads} bytes spilled (stores/loads)"
                   if k.assembled else "not assembled")
        lines.append(f"  {k.name:<40} {k.ptx_bytes or 0:>7} B PTX  {figures}")
    lines += [f"problem: {p}" for p in report.problems]
    lines.append(report.note)
    return "\n".join(lines)
