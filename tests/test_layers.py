"""The package is layered: a module imports only modules of lower-numbered notebooks (or of its own notebook), and no
cycles.

The numbering comes from the notebooks: `nbs/NN_name.ipynb` with `#| default_exp module` (and any `#| export other`)
puts that module in layer NN. Every import counts, at the top of a file or inside a function. `import phi_cls` (the
package, for `__version__`) is not a layer: it loads nothing else.
"""
import ast, json, re
from pathlib import Path

from conftest import REPO

_DIRECTIVE = re.compile(r"^#\|[ \t]*(default_exp|export|exporti)[ \t]+([A-Za-z_][\w.]*)[ \t]*$", re.M)


def notebook_layers(nbs: Path) -> dict:
    "module name -> number of the notebook that writes it."
    layers = {}
    for nb in sorted(nbs.glob("[0-9][0-9]_*.ipynb")):
        number = int(nb.name[:2])
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] != "code": continue
            for _, module in _DIRECTIVE.findall("".join(cell["source"])):
                assert layers.setdefault(module, number) == number, f"{module} is written by two notebooks"
    return layers


def _target(node, package: str) -> list:
    "The package modules an import statement names (relative or absolute)."
    if isinstance(node, ast.Import):
        return [a.name.split(".")[1] for a in node.names if a.name.startswith(package + ".")]
    if node.level == 1 and node.module: return [node.module.split(".")[0]]
    if node.level == 1: return [a.name for a in node.names]  # from . import x
    if node.module == package: return ["__init__"]
    if node.module and node.module.startswith(package + "."): return [node.module.split(".")[1]]
    return []


def module_imports(pkg: Path) -> dict:
    "module -> set of package modules it imports anywhere in its file."
    graph = {}
    for py in sorted(pkg.glob("*.py")):
        if py.stem == "_modidx": continue
        tree = ast.parse(py.read_text())
        found = {t for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for t in _target(n, pkg.name)}
        graph[py.stem] = found - {py.stem}
    return graph


def upward_imports(graph: dict, layers: dict) -> list:
    """(module, its layer, imported module, that layer) for every import of a higher layer or of a module no notebook
    writes."""
    return [(m, layers.get(m), t, layers.get(t)) for m, ts in graph.items() for t in sorted(ts)
            if layers.get(m) is None or layers.get(t) is None or layers[t] > layers[m]]


def cycles(graph: dict) -> list:
    "Import cycles, each as the list of modules around it."
    found, state = [], {}
    def visit(m, path):
        state[m] = "open"
        for t in sorted(graph.get(m, ())):
            if state.get(t) == "open": found.append(path[path.index(t):] + [t])
            elif t not in state: visit(t, path + [t])
        state[m] = "done"
    for m in sorted(graph):
        if m not in state: visit(m, [m])
    return found


def test_every_import_goes_down_and_nothing_cycles():
    layers, graph = notebook_layers(REPO / "nbs"), module_imports(REPO / "phi_cls")
    assert set(graph) <= set(layers), f"modules no notebook writes: {sorted(set(graph) - set(layers))}"
    assert {"data", "train", "cli", "__init__"} <= set(layers) and layers["data"] < layers["train"] < layers["cli"]
    assert upward_imports(graph, layers) == []
    assert cycles(graph) == []


def test_report_does_not_need_training():
    graph = module_imports(REPO / "phi_cls")
    assert "train" not in graph["report"] and "train" not in graph["predict"]


def _package(tmp, files: dict) -> Path:
    pkg = tmp / "pkg"; pkg.mkdir()
    for name, text in files.items(): (pkg / f"{name}.py").write_text(text)
    return pkg


def test_the_walk_sees_function_level_and_absolute_imports(tmp_path):
    pkg = _package(tmp_path, {"a": "import os\n", "b": "from .a import x\n",
                              "c": "def f():\n    from pkg.d import y\n    import pkg.a\n", "d": "from . import b\n"})
    graph = module_imports(pkg)
    assert graph == {"a": set(), "b": {"a"}, "c": {"a", "d"}, "d": {"b"}}
    layers = {"a": 0, "b": 1, "c": 2, "d": 3}
    assert upward_imports(graph, layers) == [("c", 2, "d", 3)]
    assert cycles(graph) == []
    assert cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}}) == [["x", "y", "z", "x"]]


def test_layers_come_from_the_notebooks(tmp_path):
    def nb(name, *sources):
        cells = [{"cell_type": "code", "source": s, "metadata": {}, "outputs": [], "execution_count": None}
                 for s in sources]
        (tmp_path / name).write_text(json.dumps({"cells": cells}))
    nb("00_base.ipynb", "#| default_exp base", "#| export\nx = 1")
    nb("03_top.ipynb", "#| default_exp top", "#| export light\ny = 2")
    nb("scratch.ipynb", "#| default_exp scratch")
    assert notebook_layers(tmp_path) == {"base": 0, "top": 3, "light": 3}
