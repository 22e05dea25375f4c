"""The package's structure, drawn from its code (benchmarks/import_graph.py): no import
cycles, xor_gpu modules imported on demand only by the CLI's lazy command loading and the
engine registry's runtimes, engine names compared only in the engine registry, devices (by
name or held in a variable) only in xor_gpu/devices.py."""
import ast
import importlib.util
import pathlib
import re

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


def test_xor_gpu_modules_are_imported_on_demand_only_by_the_cli_the_engine_registry_and_train():
    """The CLI loads a command's module when it runs; the registry imports an engine's runtime
    (and with it Theano's or PyTensor's backend) when the engine starts, so that checking
    input, which every command does first, loads neither backend; `train` loads the figure's
    module with --plot only."""
    late = {m: set(v["late_imports"]) for m, v in _import_graph().graph().items() if v["late_imports"]}
    late.pop("cli")
    assert late == {"engines": {"backend", "pytensor_backend"}, "train_command": {"plots"}}


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
    `name in ("cuda", "cpu")`), of each test of its prefix (`device.startswith("cuda")`), and of
    each comparison of a device held in a variable (`theano.config.device != device`,
    `kind != dev.kind`, `platform != wanted` of JAX's): devices.py's Device answers those."""
    def device_name(node):
        return _names_a_string(node, lambda s: devices.DEVICE_PATTERN.fullmatch(s) is not None)

    def device_prefix(node):
        return _names_a_string(node, lambda s: s.startswith(("cpu", "cuda", "opencl")))

    for node in ast.walk(tree):
        sides = (node.left, *node.comparators) if isinstance(node, ast.Compare) else ()
        if any(device_name(s) or _holds_a_device(s) for s in sides) and not _is_none_test(node):
            yield node.lineno, ast.unparse(node)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("startswith", "endswith") and any(device_prefix(a) for a in node.args)):
            yield node.lineno, ast.unparse(node)


def _holds_a_device(node):
    """Whether an expression names a device, its kind or its platform: a variable or attribute
    named so (device, dev, self.device, theano.config.device, platform), its kind (dev.kind), a
    device read from its name (device_of(name).kind), as such or decoded (kind.decode())."""
    if isinstance(node, ast.Subscript):
        return _holds_a_device(node.value)
    if isinstance(node, ast.Call):
        func = node.func
        return (func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")) in ("device", "device_of")
    if isinstance(node, ast.Attribute) and node.attr in ("kind", "decode", "strip", "lower"):
        return _holds_a_device(node.value)
    name = (node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else "").lower()
    return "device" in name or name in ("dev", "platform")


def _is_none_test(node):
    """`device is None`, `args.device is not None`: whether one was given, not which."""
    return all(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops) and any(
        isinstance(s, ast.Constant) and s.value is None for s in (node.left, *node.comparators))


def test_device_names_are_read_only_in_devices_py():
    assert _found_outside("devices.py", _device_comparisons) == []


def test_the_device_check_finds_each_way_of_comparing():
    code = ('if device == "cpu": pass\n'
            'x = config.device != "cuda0"\n'
            'y = name in ("opencl0:0", "cpu")\n'
            'z = device.startswith("cuda")\n'
            'w = name.startswith(("opencl", "x"))\n'
            'ok = kind != wanted and "cpu" if flag else "cuda"\n'
            'if theano.config.device != device: pass\n'
            'if kind.decode() != dev.kind: pass\n'
            'if device_of(device).kind not in self.kinds: pass\n'
            'if found[0].platform != wanted: pass\n'
            'if args.device is not None and count != 0 and row.kind == "x": pass\n')
    assert [line for line, _ in _device_comparisons(ast.parse(code))] == [1, 2, 3, 4, 5, 7, 8, 9, 10]


ARCHITECTURE = REPO / "docs" / "architecture.md"


def _drawn_layers(text):
    """{module: rank} of docs/architecture.md's table of layers, as drawn: top row first."""
    rows = [line for line in text.splitlines() if re.match(r"\| \d+ \|", line)]
    drawn = {}
    for rank, row in enumerate(reversed(rows)):
        for module in re.findall(r"`([\w.]+)`", row.split("|")[3]):
            assert module not in drawn, f"{module} is drawn twice"
            drawn[module] = rank
    return drawn


def test_the_architecture_page_draws_every_module_in_an_order_the_imports_keep():
    """docs/architecture.md's layers: every module once, and no import (at module level or on
    demand) of a module drawn above the importer."""
    graph = _import_graph().graph()
    drawn = _drawn_layers(ARCHITECTURE.read_text(encoding="utf-8"))
    assert sorted(drawn) == sorted(graph)
    assert _upward(graph, drawn) == []


def _upward(graph, drawn):
    """Each import of a module drawn above its importer, as "IMPORTER -> IMPORTED"."""
    return [f"{m} -> {n}" for m, v in graph.items() for n in v["imports"] + v["late_imports"] if drawn[n] > drawn[m]]


def test_the_layer_check_finds_a_module_missing_and_an_import_upward():
    text = ("| 1 | top | `a` |\n"
            "| 0 | bottom | `b`, `c.d` |\n")
    assert _drawn_layers(text) == {"a": 1, "b": 0, "c.d": 0}
    graph = {"a": {"imports": ["b"], "late_imports": []}, "b": {"imports": [], "late_imports": ["a"]},
             "c.d": {"imports": ["b"], "late_imports": []}}
    assert _upward(graph, _drawn_layers(text)) == ["b -> a"]


MOST_LINES = 400  # a module longer than this does two jobs


def test_no_module_is_over_400_lines():
    longest = {m: v["lines"] for m, v in _import_graph().graph().items() if v["lines"] > MOST_LINES}
    assert longest == {}
