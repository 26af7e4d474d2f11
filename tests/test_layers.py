"""Import rules: the layers of docs/DESIGN.md, checked on the source (lazy imports included).

Every ``import`` / ``from ... import`` of every module under benchmark/ and baselines/ is an
edge, wherever it stands (module level or inside a function); only ``if TYPE_CHECKING:``
blocks, which never run, are left out. The graph has no cycle, and no edge goes upward.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the top layer: what composes everything else (runs, the API, the CLI, the tables)
TOP = ("benchmark.runner", "benchmark.run", "benchmark.api", "benchmark.cli",
       "benchmark.cli_common", "benchmark.cli_download", "benchmark.cli_loras",
       "benchmark.leaderboard",
       "benchmark.distributed", "benchmark.tuning", "benchmark.reproduce")


def _modules() -> dict[str, Path]:
    out = {}
    for folder in ("benchmark", "baselines"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name if name and name not in ("benchmark", "baselines") else None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skip |= {id(n) for n in ast.walk(child)}
    return skip


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                resolved = _resolve(target)
                if resolved and resolved != name:
                    found.add(resolved)
        edges[name] = found
    return edges


EDGES = _edges()


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def _violations(source_prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{src} -> {dst}" for src, dsts in EDGES.items() for dst in dsts
                  if (src == source_prefix or src.startswith(source_prefix + "."))
                  and any(dst == f or dst.startswith(f + ".") for f in forbidden))


def test_no_module_is_over_700_lines():
    long = sorted(f"{name} ({n} lines)" for name, path in MODULES.items()
                  if (n := len(path.read_text().splitlines())) > 700)
    assert long == []


def test_the_walk_sees_lazy_imports():
    # benchmark.run.jobs imports the tuning module inside a function only
    assert "benchmark.tuning" in EDGES["benchmark.run.jobs"]
    assert len(MODULES) > 60


def test_no_import_cycle():
    assert _cycles(EDGES) == []


def test_core_imports_nothing_else_from_benchmark():
    bad = sorted(f"{src} -> {dst}" for src, dsts in EDGES.items() for dst in dsts
                 if src.startswith("benchmark.core") and not dst.startswith("benchmark.core"))
    assert bad == []


def test_baselines_never_import_the_top_layer():
    assert _violations("baselines", TOP) == []


def _track_folder(name: str) -> str | None:
    """``benchmark.tracks.<folder>[.x]`` -> folder (None for the registry and the base)."""
    parts = name.split(".")
    if len(parts) < 3 or parts[:2] != ["benchmark", "tracks"] or parts[2] == "base":
        return None
    return parts[2]


def _reachable(start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for dst in EDGES.get(stack.pop(), ()):
            if dst not in seen:
                seen.add(dst)
                stack.append(dst)
    return seen


def test_tracks_never_import_the_top_layer_or_each_other():
    assert _violations("benchmark.tracks", TOP) == []
    # transitively: a lower module (or an old-path alias) cannot carry one track into another
    crossing = sorted(f"{src} -> {dst}" for src in MODULES if (own := _track_folder(src))
                      for dst in _reachable(src)
                      if (other := _track_folder(dst)) and other != own)
    assert crossing == []


def test_every_track_is_one_folder_with_its_spec():
    from benchmark.tracks import SPECS

    folders = sorted({f for m in MODULES if (f := _track_folder(m))})
    assert folders == ["lora_edit", "preference", "ranking", "rating", "rerank"]
    for folder in folders:
        assert f"benchmark.tracks.{folder}.spec" in MODULES
        # a spec module is light: it imports the base only
        assert EDGES[f"benchmark.tracks.{folder}.spec"] <= {"benchmark.tracks.base"}
    assert list(SPECS) == ["lora-rec", "image-rec", "rerank", "preference", "rating",
                           "lora-edit"]


def test_old_module_paths_are_the_same_modules():
    import importlib

    for old, new in [("benchmark.preference", "benchmark.tracks.preference.track"),
                     ("benchmark.ratings", "benchmark.tracks.rating.track"),
                     ("benchmark.rerank", "benchmark.tracks.rerank.track"),
                     ("benchmark.lora.track", "benchmark.tracks.lora_edit.track")]:
        assert importlib.import_module(old) is importlib.import_module(new)
    # a committed rerank record names its control by the old path: it still resolves
    from benchmark.tracks.rerank.track import ReversedFirstStage

    module, _, attr = "benchmark.rerank:ReversedFirstStage".partition(":")
    assert getattr(importlib.import_module(module), attr) is ReversedFirstStage


def test_lower_layers_never_import_the_top_layer():
    """Data, splits, metrics, the engine, records and the track modules stay below."""
    def top(name: str) -> bool:
        return any(name == t or name.startswith(t + ".") for t in TOP)

    lower = [m for m in MODULES if m.startswith("benchmark.") and not top(m)
             and m not in ("benchmark.perf", "benchmark.crosscheck_recbole")]
    bad = sorted(f"{src} -> {dst}" for src in lower for dst in EDGES[src] if top(dst))
    assert bad == []
