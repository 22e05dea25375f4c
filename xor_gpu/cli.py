"""The command line: `xor-gpu train | parity | check | compare | doctor | link-pygpu | cuda-libs`.

Exit status (xor_gpu/errors.py): 0 ok, 2 bad input, 3 device or setup unusable, 4 training
diverged, 5 a verdict failed (not converged, out of tolerance). Errors are one line on stderr.
"""
import argparse
import os
import sys

from xor_gpu import child, devices, engines, reexec
from xor_gpu.config import TrainConfig, parse_seeds
from xor_gpu.errors import EXIT_INTERRUPTED, EXIT_OK, ConfigError, XorGpuError

PROG = "xor-gpu"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise ConfigError(message)


def _add_config_args(p):
    """The training's options (TrainConfig's fields), with --seeds beside --seed."""
    seeds = p.add_mutually_exclusive_group()
    TrainConfig.add_options(p, TrainConfig.training(), groups={"seed": seeds})
    seeds.add_argument("--seeds", metavar="LIST",
                       help="many seeds in one run, e.g. 0-19 or 1,5,9 (at most 1,000): one compilation "
                            "serves them all")


def _add_output_args(p):
    p.add_argument("--json", metavar="PATH", help="write the JSON report here (atomically)")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of the loss curve(s) here (needs matplotlib)")


def _add_tolerance_args(p):
    from xor_gpu.results.runs import DEFAULT_ATOL, DEFAULT_RTOL

    p.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                   help=f"max |prediction difference| (default {DEFAULT_ATOL:g})")
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                   help=f"max relative loss-history difference (default {DEFAULT_RTOL:g})")


def build_parser():
    parser = _Parser(prog=PROG, description="Train the 28-line Theano XOR network; compare devices.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train on one device and print the truth table")
    p.set_defaults(func=cmd_train)
    TrainConfig.add_options(p, ("device", "engine"))
    _add_config_args(p)
    _add_output_args(p)
    p.add_argument("--check", action="store_true", help="exit 5 unless every prediction converged")

    p = sub.add_parser("parity", help="train on several devices, each in its own process, and compare")
    p.set_defaults(func=cmd_parity)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--devices", default="cpu,cuda",
                       help="Theano on these devices, comma-separated, first is the reference (default cpu,cuda)")
    which.add_argument("--runs", metavar="ENGINE:DEVICE,...",
                       help="engines and devices, e.g. theano:cpu,pytensor:cpu,pytensor-jax:cpu (first: the reference)")
    _add_config_args(p)
    _add_output_args(p)
    _add_tolerance_args(p)

    p = sub.add_parser("check", help="the whole proof on this machine: doctor, train, determinism, parity, reference")
    p.set_defaults(func=cmd_check)
    p.add_argument("--device", required=True, help="cpu, cuda, cudaN or openclP:D")
    TrainConfig.add_options(p, ("engine", "steps"))
    p.add_argument("--out", default="xor-gpu-check", help="folder for the reports (default ./xor-gpu-check)")
    p.add_argument("--reference", default="builtin", metavar="FILE",
                   help="a train report to compare with (default: builtin, the committed seed reference)")
    _add_tolerance_args(p)

    p = sub.add_parser("compare", help="compare train, parity or check reports made anywhere with a reference")
    p.set_defaults(func=cmd_compare)
    p.add_argument("reports", nargs="+", metavar="REPORT", help="JSON reports (train, parity or check summary), or "
                   "the folders of checks (--out): a folder without its summary is a check that was killed")
    p.add_argument("--reference", metavar="FILE",
                   help="reference report, or builtin (the committed seed reference); default: the first run")
    p.add_argument("--all", action="store_true",
                   help="a row for every run and node, however many (default: beyond a screenful, alike runs "
                        "and passed nodes share one row)")
    _add_tolerance_args(p)
    _add_output_args(p)

    p = sub.add_parser("doctor", help="report the stack and whether a device is usable")
    p.set_defaults(func=cmd_doctor)
    p.add_argument("--device", help="also check that this device trains (exit 3 if not)")
    p.add_argument("--json", metavar="PATH", help="write the findings as JSON")
    p.add_argument("--compile-only", action="store_true",
                   help="with --device cuda: compile every kernel with NVRTC and ptxas, run none (no GPU needed)")
    p.add_argument("--arch", metavar="sm_XY",
                   help="with --compile-only: the GPU architecture (default: this machine's GPU, else sm_90)")
    p.add_argument("--driver", metavar="VERSION",
                   help="with --compile-only: the NVIDIA driver of the nodes the kernels are for, as the CUDA "
                        "version it supports (13.0, as nvidia-smi shows) or its own (580.65.06); NVRTC and "
                        "cuBLAS are chosen as on such a node (default: this machine's driver, else unknown)")

    p = sub.add_parser("link-pygpu", help="make Debian's pygpu importable in this Python environment")
    p.set_defaults(func=cmd_link_pygpu)

    p = sub.add_parser("cuda-libs", help="make the folder of NVIDIA libraries libgpuarray loads; print it")
    p.set_defaults(func=cmd_cuda_libs)
    p.add_argument("--from", dest="sources", action="append", metavar="DIR",
                   help="folder of libnvrtc/libcublas searched first (default: XOR_GPU_CUDA_LIBS); "
                        "the search goes on after it (README: CUDA libraries)")
    p.add_argument("--dest", metavar="DIR", help="where to make the folder (default ~/.cache/xor_gpu/cuda-libs/KEY)")
    return parser


def _tolerances(args):
    """The tolerances --atol and --rtol give (ConfigError for what is not one)."""
    from xor_gpu.results.runs import Tolerances

    return Tolerances(args.atol, args.rtol)


def cmd_train(args):
    from xor_gpu import train_command

    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    # args.config: made (and checked) by main(), before an engine's re-exec
    return train_command.main(args.config, seeds, args.json, args.plot, args.check)


def cmd_parity(args):
    from xor_gpu import parity

    runs = engines.parse_runs(args.runs) if args.runs is not None else parity.runs_of(args.devices)
    # Each run's config: the common options with its own engine and device, each one checked
    # (e.g. --steps-per-call against PyTensor) before any training.
    configs = {label: TrainConfig.from_args(args, engine=engine, device=device)
               for label, (engine, device) in runs.items()}
    tolerances = _tolerances(args)
    if args.seeds is not None:
        from xor_gpu import sweep

        return sweep.main(configs, parse_seeds(args.seeds), tolerances, args.json, args.plot)
    return parity.main(configs, tolerances, args.json, args.plot)


def cmd_check(args):
    from xor_gpu import check

    return check.main(args.config, args.out, args.reference, _tolerances(args))


def cmd_compare(args):
    from xor_gpu import compare

    return compare.main(args.reports, args.reference, _tolerances(args), args.json, args.plot, args.all or None)


def cmd_doctor(args):
    if args.compile_only:
        from xor_gpu import compile_only

        return compile_only.main(args.device, args.arch, args.json, args.driver)
    for option in ("arch", "driver"):
        if getattr(args, option) is not None:
            raise ConfigError(f"--{option} needs --compile-only")
    from xor_gpu import doctor

    return doctor.main(args.device, args.json)


def cmd_link_pygpu(args):
    from xor_gpu import system_pygpu

    print(system_pygpu.link())
    return EXIT_OK


def cmd_cuda_libs(args):
    from xor_gpu import cuda_libs

    print(cuda_libs.link_folder(args.sources, args.dest))
    return EXIT_OK


def _devices_of(args):
    """The devices whose NVIDIA libraries the process needs on LD_LIBRARY_PATH (launch.reexec)."""
    if args.command in ("train", "check"):
        # the CUDA libraries set up are libgpuarray's, not JAX's
        return [args.config.device] if engines.get(args.config.engine).libgpuarray else []
    if args.command == "doctor" and not args.compile_only:  # compile-only's child gets a folder of its own
        return [args.device or devices.DEFAULT_CUDA]  # doctor always shows what a cuda run would load
    return []


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        # Device names are read here, once (bad input: exit 2, before a missing engine's exit 3).
        if args.command in ("train", "check"):
            args.config = TrainConfig.from_args(args)
        elif args.command == "doctor" and args.device is not None:
            args.device = devices.device(args.device)
        if args.command == "train":
            reexec.for_engine(argv, args.config.engine)
        # A training stops here when no NVRTC/cuBLAS suits the GPU (exit 3, why and the fix);
        # doctor and check report it instead.
        reexec.for_devices(argv, _devices_of(args), strict=args.command == "train")
        return args.func(args)
    except XorGpuError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        child.write_error(exc, exc.exit_status)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - last resort: one line, never a traceback
        if os.environ.get("XOR_GPU_DEBUG"):
            raise
        print(f"{PROG}: error: {type(exc).__name__}: {' '.join(str(exc).split())} "
              f"(set XOR_GPU_DEBUG=1 for the traceback)", file=sys.stderr)
        child.write_error(exc, XorGpuError.exit_status)
        return XorGpuError.exit_status
