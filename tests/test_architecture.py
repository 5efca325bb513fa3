"""The package's shape, checked on its source with `ast` (docs/architecture.md): no function past the size at which
a phase hides in it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "planner_rl"
MAX_LINES = 120  # ../shared/docs/style.md: a function past ~120 lines is the smell
# functions allowed past it for now, each with its reason; the list only shrinks
LONG_FUNCTIONS = {
    "env/pddl.py:_analyse": "split with env/ by concept (issue 18, step 4)",
    "env/problem.py:build_problem": "split with env/ by concept (issue 18, step 4)",
}


def functions():
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path.relative_to(PACKAGE).as_posix()}:{node.name}", node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_the_budget():
    found = list(functions())
    assert len(found) > 100  # the walk sees the package
    long = {name: n for name, n in found if n > MAX_LINES}
    assert not {k: v for k, v in long.items() if k not in LONG_FUNCTIONS}, f"functions over {MAX_LINES} lines"
    assert not set(LONG_FUNCTIONS) - set(long), "an exception no longer needed: remove it from LONG_FUNCTIONS"


def module_imports() -> dict[str, set[str]]:
    """planner_rl module -> the planner_rl modules it imports, at the top or inside functions alike."""
    names = {p: ".".join(("planner_rl", *p.relative_to(PACKAGE).with_suffix("").parts)) for p in PACKAGE.rglob("*.py")}
    names = {p: n.removesuffix(".__init__") for p, n in names.items()}
    known = set(names.values())
    graph = {}
    for path, name in names.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m in known and m != name}
    return graph


def test_no_import_circle_among_the_modules():
    graph = module_imports()
    assert "planner_rl.eval_protocol" in graph["planner_rl.config"]  # the walk sees imports
    circles, done = [], set()

    def visit(node, path):
        if node in path:
            circles.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*path, node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])
    assert not circles, circles
