"""The house has no climbs back up: every import inside kowen_kedro points to its own layer or a lower
one, and no module imports itself back through others (no cycle). Function-level imports count too."""

import ast
from collections import defaultdict
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "src" / "kowen_kedro"

# Lowest first. A module belongs to the layer of its longest listed prefix.
LAYERS = [
    ("base", ["kowen_kedro", "kowen_kedro.groups", "kowen_kedro.offline", "kowen_kedro.model_identity", "kowen_kedro.langid",
              "kowen_kedro.data.validation", "kowen_kedro.loading"]),
    ("the tiny world and generation", ["kowen_kedro.world", "kowen_kedro.llm"]),
    ("runtime wiring and catalog datasets", ["kowen_kedro.runtime", "kowen_kedro.datasets"]),
    ("methods", ["kowen_kedro.data", "kowen_kedro.translation", "kowen_kedro.rewards", "kowen_kedro.preference"]),
    ("training and tiny models", ["kowen_kedro.training", "kowen_kedro.tiny"]),
    ("evaluation", ["kowen_kedro.evaluation"]),
    ("kedro project", ["kowen_kedro.pipelines", "kowen_kedro.pipeline_registry", "kowen_kedro.hooks", "kowen_kedro.parameters",
                       "kowen_kedro.settings", "kowen_kedro.runner", "kowen_kedro.forked", "kowen_kedro.cli",
                       "kowen_kedro.__main__"]),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT / "src").with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """module -> the kowen_kedro modules it imports (absolute and relative, at any depth)."""
    out: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        mod = module_name(path)
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out[mod] |= {a.name for a in node.names if a.name.startswith("kowen_kedro")}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                if target.startswith("kowen_kedro"):  # "from pkg import sub" imports the module pkg.sub
                    out[mod] |= {f"{target}.{a.name}" for a in node.names}
        out.setdefault(mod, set())
    return out


def layer(mod: str) -> int:
    best, found = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and len(p) > best:
                best, found = len(p), i
    assert found is not None, f"{mod} is in no layer: add it to LAYERS"
    return found


def test_every_import_points_to_its_own_layer_or_below():
    upward = [f"{src} ({LAYERS[layer(src)][0]}) imports {dst} ({LAYERS[layer(dst)][0]})"
              for src, dsts in imports().items() for dst in dsts if layer(dst) > layer(src)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = imports()
    known = set(graph)

    def resolve(name: str) -> str | None:  # "kowen_kedro.llm.backends" or a name imported from a package
        while name and name not in known:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name or None

    edges = {m: {r for d in ds if (r := resolve(d)) and r != m} for m, ds in graph.items()}
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_checks_see_a_climb_and_a_cycle():
    """The two checks above are not vacuous: a pipeline import from the base layer would be caught."""
    assert layer("kowen_kedro.data.validation") < layer("kowen_kedro.data.prompts") < layer("kowen_kedro.pipelines.sft.nodes")
    graph = imports()
    assert "kowen_kedro.llm.generator.CachedGenerator" in graph["kowen_kedro.runtime"]  # absolute imports are read ...
    assert "kowen_kedro.pipelines.evaluation.nodes.summarize_node" in graph["kowen_kedro.pipelines.evaluation.pipeline"]  # ... relative too


def test_no_node_calls_another_node_or_another_modules_private_helper():
    """Nodes stay thin and pure: a node function (``*_node`` in ``pipelines/``) calls library code or a helper
    of its own module, never another node (that would hide a step from the graph); and no module imports a
    ``_private`` name of another kowen_kedro module."""
    calls, private = [], []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(ROOT)
        if "pipelines" in path.parts:
            for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.endswith("_node")):
                for call in (c for c in ast.walk(fn) if isinstance(c, ast.Call)):
                    name = getattr(call.func, "id", None) or getattr(call.func, "attr", "")
                    if name.endswith("_node"):
                        calls.append(f"{where}: {fn.name} calls {name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("kowen_kedro")):
                private += [f"{where}: imports {a.name} from {'.' * node.level}{node.module or ''}"
                            for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not calls, calls
    assert not private, private
