"""The package's shape: no import circle anywhere in clipscore_sr/, and no module of clipscore_sr/human/ longer than
the developers' guide allows (~500 lines; 520 is the hard stop).

Every module is parsed with ``ast`` (nothing is imported); module-level and function-level imports count alike,
absolute (``clipscore_sr.x``) and relative (``from ..x import y``). ``from pkg import name`` is an edge to
``pkg.name`` when that is a module, else to ``pkg``. An edge to a package also reaches its ``__init__``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "clipscore_sr"
MAX_HUMAN_LINES = 520


def package_dirs(repo: Path = REPO) -> dict[str, Path]:
    """Dotted package -> folder, as pyproject's ``package-dir`` installs them (``clipscore_sr.baselines`` is
    ``baselines/``)."""
    line = re.search(r"^package-dir\s*=\s*\{(.*)\}", (repo / "pyproject.toml").read_text(), re.M)
    assert line, "pyproject.toml has no package-dir line"
    return {k: repo / v for k, v in re.findall(r'"([\w.]+)"\s*=\s*"([^"]+)"', line.group(1))}


def _modules(roots: dict[str, Path]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under each root folder (a folder mapped to its own package, or
    a symlink to one, is read under that package only)."""
    out: dict[str, Path] = {}
    own = {d.resolve() for d in roots.values()}
    for name, root in roots.items():
        for path in sorted(root.rglob("*.py")):
            if any(d in path.resolve().parents and d != root.resolve() and root.resolve() in d.parents
                   for d in own):
                continue  # inside a sub-folder mapped to a package of its own
            parts = [*name.split("."), *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name ``from <node.module>`` refers to, inside ``module``."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def import_graph(roots: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in its body); ``roots``: dotted package -> folder
    (default: pyproject's ``package-dir``)."""
    roots = package_dirs() if roots is None else roots
    mods = _modules(roots)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    top = "clipscore_sr"
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                if not (t == top or t.startswith(top + ".")):
                    continue
                while t and t not in mods:  # `import clipscore_sr.x.y` of a name inside a module
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    colour = dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done
    for start in sorted(graph):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(nxt, 2) == 1:
                return [*path[path.index(nxt):], nxt]
            elif colour.get(nxt) == 0:
                colour[nxt] = 1
                stack.append((nxt, iter(sorted(graph[nxt]))))
                path.append(nxt)
    return None


def test_no_import_circle_in_the_package() -> None:
    graph = import_graph()
    assert len(graph) > 50 and "clipscore_sr.human.ranking" in graph["clipscore_sr.human.ranking_agreement"]
    assert "clipscore_sr.errors" in graph["clipscore_sr.baselines.checkpoints"]  # baselines/ is read too
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_checker_finds_circles_of_every_kind(tmp_path: Path) -> None:
    """Relative and absolute, module-level and inside functions, through a package's __init__."""
    pkg = tmp_path / "clipscore_sr"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .b import f\n")
    (pkg / "a.py").write_text("def g():\n    import clipscore_sr.sub.b\n")
    (pkg / "sub" / "b.py").write_text("from ..c import h\n")
    (pkg / "c.py").write_text("import os\n\ndef h():\n    from clipscore_sr import a\n")
    cycle = find_cycle(import_graph({"clipscore_sr": pkg}))
    assert cycle is not None and cycle[0] == cycle[-1]
    assert {"clipscore_sr.a", "clipscore_sr.sub.b", "clipscore_sr.c"} <= set(cycle)
    (pkg / "c.py").write_text("import os\n")
    assert find_cycle(import_graph({"clipscore_sr": pkg})) is None


def test_human_modules_stay_readable() -> None:
    long = {str(p.relative_to(PKG.parent)): n for p in sorted((PKG / "human").rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_HUMAN_LINES}
    assert not long, f"modules over {MAX_HUMAN_LINES} lines (split them by concern): {long}"
