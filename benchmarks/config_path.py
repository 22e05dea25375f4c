"""The path of `xor-gpu train`'s config through the package, followed as it runs: from
train_command.main on, every call of a function of xor_gpu that is given the config, or a
part of it that says where the run trains (its device, its engine), in the order of the
calls (a method of the value itself, asked a question, is not a move: the value answers). The modules of those calls, consecutive calls in one module counted once, are the
path: its modules, its moves (from one module to the next), the moves back up (to a module
of a higher layer than the one it leaves: benchmarks/import_graph.py's layers) and the
returns (to a module it had left before).

    python benchmarks/config_path.py [--steps N] [--json]
"""
import argparse
import importlib.util
import json
import os
import pathlib
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent


def _import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", HERE / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _module_of(filename, package):
    """The graph's name of the xor_gpu module at `filename` (results.runs), or None."""
    try:
        rel = pathlib.Path(filename).resolve().relative_to(package)
    except ValueError:
        return None
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] or ["xor_gpu"]
    return ".".join(parts)


def follow(argv):
    """The modules, in call order, of the calls that were given the config or its device or
    engine, while `xor-gpu ARGV` (a train command) runs in this process."""
    import xor_gpu
    from xor_gpu import cli, config as config_module, train_command

    package = pathlib.Path(xor_gpu.__file__).resolve().parent
    inside, path, configs = [False], [], []

    def carries(value):
        if isinstance(value, config_module.TrainConfig):
            configs.append(value)
            return True
        return value is not None and any(value is part for c in configs for part in (c.device, c.engine))

    def profile(frame, event, arg):
        if event != "call":
            return
        if frame.f_code is train_command.main.__code__:
            inside[0] = True
        if not inside[0]:
            return
        module = _module_of(frame.f_code.co_filename, package)
        if module is None:
            return
        code = frame.f_code
        names = [n for n in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount] if n not in ("self", "cls")]
        if any([carries(frame.f_locals.get(n)) for n in names]):
            if not path or path[-1] != module:
                path.append(module)

    sys.setprofile(profile)
    try:
        status = cli.main(argv)
    finally:
        sys.setprofile(None)
    if status:
        raise SystemExit(f"xor-gpu {' '.join(argv)}: exit {status}")
    return path


def measure(path, layers):
    moves = list(zip(path, path[1:]))
    seen, returns = set(path[:1]), 0
    for _, to in moves:
        returns += to in seen
        seen.add(to)
    up = sum(1 for a, b in moves if (layers.get(b) or 0) > (layers.get(a) or 0))
    return {"path": path, "modules": len(set(path)), "moves": len(moves), "up": up, "returns": returns}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = follow(["train", "--steps", str(args.steps), "--json", os.path.join(tmp, "r.json")])
    graph = _import_graph()
    import xor_gpu

    result = measure(path, graph.layers(graph.graph(pathlib.Path(xor_gpu.__file__).resolve().parent)))
    if args.json:
        print(json.dumps(result))
        return 0
    print(" -> ".join(result["path"]))
    print(f"{result['modules']} modules, {result['moves']} moves, {result['up']} back up to a module above, "
          f"{result['returns']} returns to a module it had left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
