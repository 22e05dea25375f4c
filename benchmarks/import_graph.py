"""The import graph of the xor_gpu package, drawn from the code: each module's lines, its
layer (0: imports no xor_gpu module; n: one more than its deepest import), import cycles,
and the imports of xor_gpu modules made inside functions, or on demand: a module named as
"xor_gpu.MODULE:NAME" (the engine registry's runtimes) is imported when first used.

    python benchmarks/import_graph.py [--json]
"""
import argparse
import ast
import json
import pathlib
import re
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "xor_gpu"
ON_DEMAND = re.compile(r"xor_gpu\.([\w.]+):\w+")


def _module(dotted, package=PACKAGE):
    """The graph's name of module xor_gpu.DOTTED ("results.runs"), or None where there is none."""
    path = package.joinpath(*dotted.split("."))
    return dotted if path.with_suffix(".py").exists() or (path / "__init__.py").exists() else None


def _imported(node, package=PACKAGE):
    """The xor_gpu modules an import statement names: `from xor_gpu.results import runs` names
    results.runs, `from xor_gpu.results import X` (not a module) the package results."""
    if isinstance(node, ast.Import):
        return [a.name.split(".", 1)[1] for a in node.names if a.name.startswith("xor_gpu.")]
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "xor_gpu":
        inside = node.module.partition(".")[2]
        found = [_module(f"{inside}.{a.name}" if inside else a.name, package) for a in node.names]
        return [m for m in found if m] if not inside or any(found) else [inside]
    return []


def _sources(package):
    """(name, path) of every module: the top-level ones (the package's __init__ named xor_gpu),
    and each subpackage's, named from the package (results, results.runs; cuda_standin)."""
    for path in sorted(package.glob("*.py")):
        yield package.name if path.name == "__init__.py" else path.stem, path
    for init in sorted(package.glob("*/__init__.py")):
        yield init.parent.name, init
        for path in sorted(init.parent.glob("*.py")):
            if path != init:
                yield f"{init.parent.name}.{path.stem}", path


def graph(package=PACKAGE):
    """{module: {"lines", "imports", "late_imports"}}: imports at module level, and inside functions."""
    modules = {}
    for name, path in _sources(package):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {m for node in tree.body for m in _imported(node, package)}
        late = {match[1] for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
                for match in [ON_DEMAND.fullmatch(node.value)] if match}
        for func in ast.walk(tree):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                late |= {m for node in ast.walk(func) for m in _imported(node, package)}
        modules[name] = {"lines": len(path.read_text(encoding="utf-8").splitlines()),
                         "imports": sorted(top - {name}), "late_imports": sorted(late - {name})}
    return modules


def cycles(modules, late=True):
    """Strongly connected components of more than one module (Tarjan), over all imports."""
    edges = {m: set(v["imports"]) | (set(v["late_imports"]) if late else set()) for m, v in modules.items()}
    index, low, stack, found, counter = {}, {}, [], [], [0]

    def visit(m):
        index[m] = low[m] = counter[0]
        counter[0] += 1
        stack.append(m)
        for n in edges.get(m, ()):
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            component = []
            while True:
                n = stack.pop()
                component.append(n)
                if n == m:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for m in sorted(edges):
        if m not in index:
            visit(m)
    return sorted(found)


def layers(modules):
    """{module: layer} over module-level imports (a module in a cycle gets None)."""
    out = {}

    def layer(m, seen=()):
        if m in seen:
            return None
        if m not in out:
            below = [layer(n, (*seen, m)) for n in modules[m]["imports"] if n in modules]
            out[m] = None if None in below else 1 + max(below, default=-1)
        return out[m]

    for m in modules:
        layer(m)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the graph as JSON")
    args = parser.parse_args(argv)
    modules = graph()
    depth = layers(modules)
    summary = {"modules": len(modules), "lines": sum(v["lines"] for v in modules.values()),
               "imports": sum(len(v["imports"]) + len(v["late_imports"]) for v in modules.values()),
               "layers": 1 + max((d for d in depth.values() if d is not None), default=-1),
               "cycles": cycles(modules),
               "late_imports": {m: v["late_imports"] for m, v in modules.items() if v["late_imports"]}}
    if args.json:
        print(json.dumps({"summary": summary, "modules": modules, "layer": depth}, indent=1))
        return 0
    for m in sorted(modules, key=lambda m: (depth[m] is None, depth[m] or 0, m)):
        v = modules[m]
        late = f"  (on demand: {', '.join(v['late_imports'])})" if v["late_imports"] else ""
        print(f"{depth[m] if depth[m] is not None else '-':>2} {m:<18} {v['lines']:>4}  {', '.join(v['imports'])}{late}")
    print(f"{summary['modules']} modules, {summary['lines']} lines, {summary['imports']} imports of xor_gpu "
          f"modules, {summary['layers']} layers")
    print(f"cycles: {summary['cycles'] or 'none'}")
    late = sum(len(v) for v in summary["late_imports"].values())
    print(f"imports on demand (inside functions, or by name): {late} ({', '.join(f'{m} {len(v)}' for m, v in summary['late_imports'].items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
