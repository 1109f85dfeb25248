"""House rules of the package, checked on its source: learners read `course_utils`, so it stays a
set of small rooms with one-way doors.

- no import cycle, counting every import (module level and inside functions) and the package
  `__init__` that importing a submodule runs first;
- no import of another `course_utils` module inside a function (those exist only to dodge a cycle;
  optional heavy third-party packages may still be imported where they are needed);
- no `_private` name imported from another module (a helper two files need is public);
- nothing imported from `notebooks/`;
- no file above 600 lines.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "course_utils"
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def resolve(name: str, node: ast.ImportFrom | ast.Import) -> list[tuple[str, list[str]]]:
    """The modules an import statement in module ``name`` imports, with the names it takes."""
    if isinstance(node, ast.Import):
        return [(alias.name, []) for alias in node.names]
    if node.level == 0:
        base = node.module or ""
    else:
        package = name.split(".") if is_package(name) else name.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    targets = [(base, [alias.name for alias in node.names])]
    # `from . import data` imports the module course_utils.data
    targets += [
        (f"{base}.{alias.name}", []) for alias in node.names if f"{base}.{alias.name}" in MODULES
    ]
    return targets


def imports(name: str):
    """(target module, names, inside a function?, line) for every import in module ``name``."""
    tree = ast.parse(MODULES[name].read_text())
    in_functions = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for target, names in resolve(name, node):
                yield target, names, id(node) in in_functions, node.lineno


def internal(target: str) -> str | None:
    """The course_utils module ``target`` names (its package if it is a name inside one)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def graph() -> dict[str, set[str]]:
    edges = {name: set() for name in MODULES}
    for name in MODULES:
        for target, _, _, _ in imports(name):
            module = internal(target)
            while module:  # importing a.b.c runs a/__init__ and a/b/__init__ first,
                # unless they are the importer itself or a package it is inside (already running)
                if module != name and not name.startswith(module + "."):
                    edges[name].add(module)
                module = module.rpartition(".")[0] if "." in module else None
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_real_imports():
    edges = graph()
    assert "course_utils.train" in edges["course_utils.plot"]
    assert "course_utils.detection.backbone" in edges["course_utils.detection.centernet"]
    assert "course_utils.detection" not in edges["course_utils.detection.centernet"]  # its parent
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_follow_the_house_rules(name):
    for target, names, in_function, line in imports(name):
        where = f"{MODULES[name].relative_to(PACKAGE.parent)}:{line}"
        assert "notebooks" not in target.split("."), f"{where} imports from notebooks/"
        module = internal(target)
        if module is None or target == "__future__":
            continue
        assert not in_function, (
            f"{where}: import of {target} inside a function (move it to the top)"
        )
        if module != name:
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{where} imports private {private} from {target}: make it public"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_files_stay_small(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, (
        f"{MODULES[name].name} has {lines} lines; split it (one idea per file)"
    )
