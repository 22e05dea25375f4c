"""The package's structure, drawn from its code (benchmarks/import_graph.py): no import
cycles, xor_gpu modules imported on demand only by the CLI's lazy command loading and the
engine registry's runtimes, engine names compared only in the engine registry, device names
only in xor_gpu/devices.py."""
import ast
import importlib.util
import pathlib

from xor_gpu import devices, engines

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = REPO / "xor_gpu"


def _import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", REPO / "benchmarks" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_graph_sees_every_import(tmp_path):
    """The drawing itself: module-level and function-level imports, both spellings, a cycle."""
    (tmp_path / "a.py").write_text("from xor_gpu import b\n")
    (tmp_path / "b.py").write_text("import os\n\ndef f():\n    from xor_gpu.a import x\n")
    (tmp_path / "c.py").write_text("import xor_gpu.b\n")
    (tmp_path / "d.py").write_text('RUNTIME = "xor_gpu.c:Runtime"\n')  # imported when first used
    (tmp_path / "p").mkdir()  # a subpackage: its modules named from the package
    (tmp_path / "p" / "__init__.py").write_text("")
    (tmp_path / "p" / "q.py").write_text("from xor_gpu.p import r\nfrom xor_gpu import c\n")
    (tmp_path / "p" / "r.py").write_text("from xor_gpu.p import NAME\n")  # a name of the package itself
    graph = _import_graph()
    modules = graph.graph(tmp_path)
    assert {m: (v["imports"], v["late_imports"]) for m, v in modules.items()} == {
        "a": (["b"], []), "b": ([], ["a"]), "c": (["b"], []), "d": ([], ["c"]),
        "p": ([], []), "p.q": (["c", "p.r"], []), "p.r": (["p"], [])}
    assert graph.cycles(modules) == [["a", "b"]] and graph.cycles(modules, late=False) == []
    assert graph.layers(modules) == {"a": 1, "b": 0, "c": 1, "d": 0, "p": 0, "p.q": 2, "p.r": 1}


def test_no_import_cycles():
    graph = _import_graph()
    assert graph.cycles(graph.graph()) == []


def test_xor_gpu_modules_are_imported_on_demand_only_by_the_cli_and_the_engine_registry():
    """The CLI loads a command's module when it runs; the registry imports an engine's runtime
    (and with it Theano's or PyTensor's backend) when the engine starts, so that checking
    input, which every command does first, loads neither backend."""
    late = {m: set(v["late_imports"]) for m, v in _import_graph().graph().items() if v["late_imports"]}
    late.pop("cli")
    assert late == {"engines": {"backend", "pytensor_backend"}}


def _engine_comparisons(tree):
    """(line, text) of each comparison with an engine's name (or the default engine), and of
    each table keyed by engine names."""
    def engine_name(node):
        return (_names_a_string(node, lambda s: s in engines.ENGINES)
                or isinstance(node, ast.Attribute) and node.attr == "DEFAULT")

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(op, (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)) for op in node.ops) and any(
                    engine_name(s) for s in sides if not isinstance(s, (ast.Tuple, ast.List, ast.Set))):
                yield node.lineno, ast.unparse(node)
            elif any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops) and any(
                    isinstance(s, (ast.Tuple, ast.List, ast.Set)) and engine_name(s) for s in node.comparators):
                yield node.lineno, ast.unparse(node)
        elif isinstance(node, ast.Dict) and sum(engine_name(k) for k in node.keys if k is not None) > 1:
            yield node.lineno, ast.unparse(node)[:60]


def _names_a_string(node, test):
    """Whether `node` is a string constant that passes `test`, or a tuple, list or set holding one."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and test(node.value)
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(_names_a_string(e, test) for e in node.elts)


def _found_outside(module, finder):
    """What `finder` finds in every module of the package but `module`, as PATH:LINE: TEXT."""
    return [f"{path.relative_to(PACKAGE)}:{line}: {text}" for path in sorted(PACKAGE.rglob("*.py"))
            if path != PACKAGE / module for line, text in finder(ast.parse(path.read_text(encoding="utf-8")))]


def test_engine_names_are_compared_only_in_the_registry():
    assert _found_outside("engines.py", _engine_comparisons) == []


def test_the_engine_check_finds_each_way_of_comparing():
    code = ('if config.engine == "theano": pass\n'
            'x = engine != engines.DEFAULT\n'
            'y = name in ("pytensor-jax", "pytensor-numba")\n'
            'z = {"theano": 1, "pytensor-jax": 2}.get(engine)\n'
            'ok = "pytensor" in versions and engine == "cuda"\n')
    assert [line for line, _ in _engine_comparisons(ast.parse(code))] == [1, 2, 3, 4]


def _device_comparisons(tree):
    """(line, text) of each comparison of a device's name as a string (`device == "cpu"`,
    `name in ("cuda", "cpu")`) and of each test of its prefix (`device.startswith("cuda")`)."""
    def device_name(node):
        return _names_a_string(node, lambda s: devices.DEVICE_PATTERN.fullmatch(s) is not None)

    def device_prefix(node):
        return _names_a_string(node, lambda s: s.startswith(("cpu", "cuda", "opencl")))

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(device_name(s) for s in (node.left, *node.comparators)):
            yield node.lineno, ast.unparse(node)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("startswith", "endswith") and any(device_prefix(a) for a in node.args)):
            yield node.lineno, ast.unparse(node)


def test_device_names_are_read_only_in_devices_py():
    assert _found_outside("devices.py", _device_comparisons) == []


def test_the_device_check_finds_each_way_of_comparing():
    code = ('if device == "cpu": pass\n'
            'x = config.device != "cuda0"\n'
            'y = name in ("opencl0:0", "cpu")\n'
            'z = device.startswith("cuda")\n'
            'w = name.startswith(("opencl", "x"))\n'
            'ok = platform == "gpu" and kind != wanted and "cpu" if flag else "cuda"\n')
    assert [line for line, _ in _device_comparisons(ast.parse(code))] == [1, 2, 3, 4, 5]
