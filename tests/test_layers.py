"""The package's layers, locked in: what may import what, no import cycles, torch only where needed.

    tinct.native <- tinct.color     <- tinct.engines (registry; optimization/, learned/) <- tinct.api
    tinct.serve (protocol: torch-free)  tinct.training  tinct.tools (editors: torch-free)

The import graph is read from the source (module-level imports only: an import inside a
function runs when it is called, after every module has loaded); what torch a module pulls in
is checked for real, in a fresh interpreter.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "daemon"
PACKAGE = ROOT / "tinct"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _top_level(tree: ast.Module):
    """Import statements that run when the module is imported (not those inside functions, nor
    those under `if TYPE_CHECKING:`)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            todo.extend(node.orelse)  # for type checkers only: never runs
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                todo.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            todo.extend(node.body)


def imports(name: str, lazy: bool = False) -> set[str]:
    """The tinct modules `name` imports (with `lazy`, also those imported inside functions)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))] if lazy else _top_level(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            parts = target.split(".")
            # importing a.b.c runs a, a.b and a.b.c
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & MODULES.keys()
    found.discard(name)
    return found


def test_the_graph_sees_the_package():
    assert {"tinct", "tinct.api", "tinct.engines", "tinct.serve.protocol", "tinct.native.kernels",
            "tinct.engines.learned.engine", "tinct.tools.editors"} <= MODULES.keys()
    assert "tinct.engines.optimization.levin" in imports("tinct.engines.optimization.engine")
    assert "tinct.engines" in imports("tinct.serve.protocol")


def test_no_import_cycles():
    graph = {name: imports(name) for name in MODULES}
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def _under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("layer, forbidden", [
    ("tinct.native", ("tinct.api", "tinct.color", "tinct.engines", "tinct.serve", "tinct.training", "tinct.tools")),
    ("tinct.color", ("tinct.api", "tinct.engines", "tinct.serve", "tinct.training", "tinct.tools")),
    ("tinct.engines", ("tinct.api", "tinct.serve", "tinct.training", "tinct.tools")),
    ("tinct.serve", ("tinct.training", "tinct.tools")),
    ("tinct.training", ("tinct.serve", "tinct.tools")),
])
def test_lower_layers_do_not_import_higher_ones(layer, forbidden):
    """Even inside functions: colour maths knows no engine, engines know no daemon."""
    for name in MODULES:
        if _under(name, layer):
            bad = {m for m in imports(name, lazy=True) if _under(m, *forbidden)}
            assert not bad, f"{name} imports {sorted(bad)}"


def test_api_reaches_engines_only_through_the_registry():
    for lazy in (False, True):
        direct = {m for m in imports("tinct.api", lazy) if _under(m, "tinct.engines") and m != "tinct.engines"}
        assert not direct, direct


def test_only_kernels_touches_the_c_extension():
    """`kernels` is the one doorway to _kernels.c: nobody else imports it or passes it raw addresses."""
    for name, path in MODULES.items():
        if name == "tinct.native.kernels":
            continue
        tree = ast.parse(path.read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {a.name.rpartition(".")[2] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                  for a in n.names}
        assert not names & {"_kernels", "data_ptr"}, name


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("modules", [
    "tinct",
    "tinct.serve.protocol",
    "tinct.tools.editors",
    "tinct.engines",
    "tinct.serve.admission",
])
def test_light_modules_import_no_torch(modules):
    done = run(f"import sys, tinct, {modules}; "
               "assert 'torch' not in sys.modules, 'torch was imported'")
    assert done.returncode == 0, done.stderr


def test_tinct_is_lazy_but_complete():
    done = run("import sys, tinct; assert 'torch' not in sys.modules; "
               "from tinct import colorize, suggest_colors, ModelNotInstalled; import tinct.api as a; "
               "assert colorize is a.colorize and suggest_colors is a.suggest_colors; "
               "assert issubclass(ModelNotInstalled, ValueError); print(sorted(tinct.__all__))")
    assert done.returncode == 0, done.stderr
    with pytest.raises(AttributeError):
        import tinct
        tinct.no_such_name  # noqa: B018


def test_every_module_imports_in_a_fresh_interpreter():
    """Each module on its own, first thing, so an order-dependent cycle shows up as an ImportError
    (a package's __main__ is its program: `python -m` runs it, tinctd's in every daemon test)."""
    from concurrent.futures import ThreadPoolExecutor

    names = [name for name in MODULES if not name.endswith(".__main__")]
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = dict(zip(names, pool.map(lambda name: run(f"import {name}"), names)))
    bad = {name: d.stderr[-600:] for name, d in done.items() if d.returncode}
    assert not bad, bad



def _unannotated(tree: ast.Module) -> list[str]:
    """Public functions and methods of public classes (and every __init__ of those) lacking a
    parameter annotation (self and cls aside) or a return annotation (__init__ aside), as
    "name:line (what)".  Triton kernels are exempt: Triton reads their annotations (tl.constexpr)
    as compile-time specialisation, not Python types."""
    found = []

    def visit(body: list[ast.stmt], owner: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                visit(node.body, f"{owner}{node.name}.")
            elif isinstance(node, (ast.If, ast.Try)):
                for field in ("body", "orelse", "finalbody"):
                    visit(getattr(node, field, []), owner)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body, owner)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                public = not node.name.startswith("_") or node.name == "__init__"
                jit = any(ast.unparse(d.func if isinstance(d, ast.Call) else d) in ("triton.jit", "jit")
                          for d in node.decorator_list)
                if not public or jit:
                    continue
                a = node.args
                params = [p for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
                params += [p for p in (a.vararg, a.kwarg) if p is not None]
                bare = [p.arg for p in params if p.annotation is None]
                if node.returns is None and node.name != "__init__":
                    bare.append("return")
                if bare:
                    found.append(f"{owner}{node.name}:{node.lineno} ({', '.join(bare)})")

    visit(tree.body, "")
    return found


def test_public_functions_have_type_hints():
    """Over the package and every plug-in (GIMP, Krita and the modules both vendor)."""
    repo = ROOT.parent
    paths = sorted(PACKAGE.rglob("*.py")) + sorted((repo / "plugins").rglob("*.py"))
    gaps = {p.relative_to(repo).as_posix(): _unannotated(ast.parse(p.read_text())) for p in paths}
    missing = {path: names for path, names in gaps.items() if names}
    assert not missing, "public functions without type hints:\n" + "\n".join(
        f"  {path}: {'; '.join(names)}" for path, names in missing.items())
