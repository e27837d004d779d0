"""The house keeps its shape: imports run only downward, and none runs in a circle.

DESIGN.md's layers: ground (settings, errors, files, privacy masking) → rules (members,
filters, quota, templates, mail tokens) → stages (compose, ledger, delivery, hygiene scanning,
API client) → the conductor (``campaign``) → faces (cli, widgets, report, servers); no face
past the conductor, and no face opening the ledger: it asks ``campaign``. Every ``import`` in
a module counts, at module level, inside a function or under ``TYPE_CHECKING`` alike: a lazy
import hides a circle from Python, not from a reader.

Today's violations are listed below, each with why it is there; the lists may only shrink
(a new violation fails, and so does an entry that no longer happens: take it off).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bcartnb"

GROUND, RULES, STAGES, CONDUCTOR, FACES = range(5)
LAYER_NAMES = ("ground", "rules", "stages", "conductor", "faces")

#: Module (or package: it covers what is inside) → layer; the longest prefix decides.
LAYERS: Mapping[str, int] = {
    "bcartnb": GROUND,  # the root only re-exports lazily (``__getattr__``) and has __version__
    "bcartnb.exceptions": GROUND,
    "bcartnb.settings": GROUND,
    "bcartnb.files": GROUND,
    "bcartnb.privacy": GROUND,
    "bcartnb.address_key": GROUND,  # an address as every list and signature compares it
    "bcartnb.plans": GROUND,
    "bcartnb.closing": GROUND,  # what a ``with`` block does to a connection, mailbox or server
    "bcartnb.pacing": GROUND,  # at most N in any T seconds: the send loop and the API client
    "bcartnb.near": GROUND,  # what a mistyped name or value was probably meant to be
    "bcartnb.spreadsheet": GROUND,  # a CSV cell that stays text, a CSV Excel reads as UTF-8
    "bcartnb.members": RULES,
    "bcartnb.filters": RULES,
    "bcartnb.orders": RULES,  # 受注 read in, the purchase columns made from it
    "bcartnb.filter_hints": RULES,  # a filter value no member holds, and the near ones
    "bcartnb.audience": RULES,
    "bcartnb.search": RULES,
    "bcartnb.segments": RULES,
    "bcartnb.quota": RULES,
    "bcartnb.templates": RULES,
    "bcartnb.mailcheck": RULES,
    "bcartnb.active_content": RULES,  # mailcheck's active-content findings
    "bcartnb.text_markup": RULES,  # mailcheck's HTML tags in a text mail
    "bcartnb.shown_text": RULES,  # mailcheck's lines: what a recipient reads of each part
    "bcartnb.htmldepth": RULES,  # how deep an HTML mail nests, before css-inline sees it
    "bcartnb.mailtokens": RULES,  # the unsubscribe token, the VERP, the Message-ID's tokens
    "bcartnb.compose": STAGES,
    "bcartnb.ledger": STAGES,
    "bcartnb.delivery": STAGES,
    "bcartnb.transports": STAGES,
    "bcartnb.sink": STAGES,  # the demo's SMTP server: a transport's other end
    "bcartnb.hygiene": STAGES,
    "bcartnb.bcart_api": STAGES,
    "bcartnb.shop": STAGES,  # writes the shop folder and its ledger for ``init``
    "bcartnb.campaign": CONDUCTOR,
    "bcartnb.__main__": FACES,
    "bcartnb.cli": FACES,
    "bcartnb.widgets": FACES,
    "bcartnb.report": FACES,
    "bcartnb.demo": FACES,
    "bcartnb.hygiene.report": FACES,
    "bcartnb.hygiene.unsubscribe": FACES,  # the public server
    "bcartnb.hygiene.unsubscribe_pages": FACES,  # its pages
    "bcartnb.hygiene.tracking_server": FACES,  # its click and open answers
    "bcartnb.hygiene.http_guard": FACES,  # the public server's guard
    "bcartnb.hygiene.server_log": FACES,  # the public server's log, in Japanese
}

#: Below the conductor that no face may import (DESIGN: faces get results, summaries and
#: masking from ``campaign`` or the ground).
PAST_THE_CONDUCTOR = ("bcartnb.delivery", "bcartnb.transports")

#: (importer, imported) running up a layer today; issue 22 moves each away.
KNOWN_UPWARD: frozenset[tuple[str, str]] = frozenset()

#: (face, stage) reaching past the conductor today; issue 22 moves each away.
KNOWN_PAST_CONDUCTOR: frozenset[tuple[str, str]] = frozenset()

#: The ledger, which a face reads and changes through ``campaign`` (its history, quota and
#: suppression list) rather than opening it.
LEDGER = "bcartnb.ledger"

#: (face, ledger module) a face imports on purpose; each side covers what is inside it.
LEDGER_FACES: frozenset[tuple[str, str]] = frozenset(
    {
        # the public unsubscribe server records each request itself, in its own process
        # (no campaign to conduct), and answers from the request's recorded state
        ("bcartnb.hygiene.unsubscribe", LEDGER),
        ("bcartnb.hygiene.tracking_server", LEDGER),  # the same server's clicks and opens
        # --reason's choices when the parser is built: the schema is their one truth and is
        # light, where ``campaign`` would load pandas on every start of the command line
        ("bcartnb.cli.hygiene", "bcartnb.ledger.schema"),
    }
)

#: (face, ledger module) a face still imports; issue 22 moves each to ``campaign``.
KNOWN_LEDGER_FACES: frozenset[tuple[str, str]] = frozenset()


#: The modules of each import circle today: a circle may lose members, never gain one.
KNOWN_CIRCLES: tuple[frozenset[str], ...] = ()


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name → its file, for every module of the package."""
    out: dict[str, Path] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _root_exports(files: Mapping[str, Path]) -> dict[str, str]:
    """The root package's lazy re-exports: name → the module that defines it."""
    tree = ast.parse(files["bcartnb"].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, dict)
            return {str(k): str(v) for k, v in value.items()}
    return {}


def imports_of(name: str, files: Mapping[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file.

    ``from a.b import c`` is the module ``a.b.c`` when there is one, else ``a.b``; a name
    the root re-exports lazily is the module that defines it.
    """
    path = files[name]
    exports = _root_exports(files)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in files:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(filter(None, (resolve(a.name) for a in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[: len(package) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            if base != "bcartnb" and not base.startswith("bcartnb."):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in files:
                    found.add(full)
                elif base == "bcartnb" and alias.name in exports:
                    found.add(exports[alias.name])
                elif (target := resolve(base)) is not None:
                    found.add(target)
    found.discard(name)
    return found


def import_graph(files: Mapping[str, Path]) -> dict[str, set[str]]:
    return {name: imports_of(name, files) for name in files}


def circles(graph: Mapping[str, Iterable[str]]) -> list[frozenset[str]]:
    """The strongly connected groups of two or more modules (Tarjan), each one circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(frozenset(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer(name: str) -> int:
    # the root covers only itself: a new module must be given its layer on purpose
    best = max(
        (p for p in LAYERS if name == p or (p != "bcartnb" and name.startswith(p + "."))),
        key=len,
        default=None,
    )
    if best is None:
        pytest.fail(f"{name} has no layer: add it to LAYERS in tests/test_layers.py")
    return LAYERS[best]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(module_files())


# --- the check itself can fail ---------------------------------------------------------------


def _write(root: Path, files: Mapping[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return module_files(root / "bcartnb")


def test_a_lazy_import_inside_a_function_still_closes_a_circle(tmp_path: Path) -> None:
    files = _write(
        tmp_path,
        {
            "bcartnb/__init__.py": "_EXPORTS = {}\n",
            "bcartnb/pkg/__init__.py": "",
            "bcartnb/pkg/a.py": "from bcartnb.pkg.b import f\n",
            "bcartnb/pkg/b.py": "def f():\n    from bcartnb.pkg import a\n    return a\n",
            "bcartnb/pkg/c.py": "from . import a\nfrom .b import f\n",
        },
    )
    graph = import_graph(files)
    assert graph["bcartnb.pkg.b"] == {"bcartnb.pkg.a"}
    assert graph["bcartnb.pkg.c"] == {"bcartnb.pkg.a", "bcartnb.pkg.b"}
    assert circles(graph) == [frozenset({"bcartnb.pkg.a", "bcartnb.pkg.b"})]


def test_a_name_the_root_re_exports_is_its_module(tmp_path: Path) -> None:
    files = _write(
        tmp_path,
        {
            "bcartnb/__init__.py": "_EXPORTS = {'run': 'bcartnb.top'}\n__version__ = '1'\n",
            "bcartnb/top.py": "from bcartnb.low import x\n",
            "bcartnb/low.py": "from bcartnb import run, __version__\nx = 1\n",
        },
    )
    graph = import_graph(files)
    assert graph["bcartnb.low"] == {"bcartnb", "bcartnb.top"}
    assert circles(graph) == [frozenset({"bcartnb.low", "bcartnb.top"})]


# --- the package -----------------------------------------------------------------------------


def test_the_ledger_has_no_import_circle(graph: dict[str, set[str]]) -> None:
    ledger = {m: {t for t in ts if _within(t, "bcartnb.ledger")} for m, ts in graph.items()}
    inside = {m: ts for m, ts in ledger.items() if _within(m, "bcartnb.ledger")}
    assert "bcartnb.ledger.lifecycle" in inside
    assert circles(inside) == []


def test_the_lifecycle_imports_no_module_that_changes_a_state(graph: dict[str, set[str]]) -> None:
    assert {t for t in graph["bcartnb.ledger.lifecycle"] if _within(t, "bcartnb.ledger")} <= {
        "bcartnb.ledger.database",
        "bcartnb.ledger.schema",
    }


def test_no_new_import_circle(graph: dict[str, set[str]]) -> None:
    found = circles(graph)
    new = [sorted(c) for c in found if not any(c <= known for known in KNOWN_CIRCLES)]
    assert new == [], "import circle(s): break them (see the module docstring)"
    gone = [sorted(k) for k in KNOWN_CIRCLES if not any(c <= k for c in found)]
    assert gone == [], "circle(s) fixed: take them off KNOWN_CIRCLES"


def test_imports_run_only_downward(graph: dict[str, set[str]]) -> None:
    upward = {(m, t) for m, targets in graph.items() for t in targets if layer(m) < layer(t)}
    new = sorted(
        f"{m} ({LAYER_NAMES[layer(m)]}) → {t} ({LAYER_NAMES[layer(t)]})"
        for m, t in upward - KNOWN_UPWARD
    )
    assert new == [], "imports running up a layer"
    assert sorted(KNOWN_UPWARD - upward) == [], "fixed: take them off KNOWN_UPWARD"


def _faces_importing(graph: Mapping[str, set[str]], *prefixes: str) -> set[tuple[str, str]]:
    """(face, module) for every module under one of ``prefixes`` that a face imports."""
    return {
        (m, t)
        for m, targets in graph.items()
        if layer(m) == FACES
        for t in targets
        if any(_within(t, p) for p in prefixes)
    }


def test_no_face_reaches_past_the_conductor(graph: dict[str, set[str]]) -> None:
    past = _faces_importing(graph, *PAST_THE_CONDUCTOR)
    assert sorted(past - KNOWN_PAST_CONDUCTOR) == [], "faces importing below the conductor"
    assert sorted(KNOWN_PAST_CONDUCTOR - past) == [], "fixed: take them off KNOWN_PAST_CONDUCTOR"


def test_no_face_opens_the_ledger_itself(graph: dict[str, set[str]]) -> None:
    found = _faces_importing(graph, LEDGER)

    def covers(face: str, stage: str) -> set[tuple[str, str]]:
        return {(m, t) for m, t in found if _within(m, face) and _within(t, stage)}

    allowed = LEDGER_FACES | KNOWN_LEDGER_FACES
    left = found.difference(*(covers(f, s) for f, s in allowed))
    assert sorted(left) == [], "faces opening the ledger: ask campaign (history, suppressions)"
    unused = sorted(entry for entry in allowed if not covers(*entry))
    assert unused == [], "no longer happens: take them off LEDGER_FACES / KNOWN_LEDGER_FACES"
