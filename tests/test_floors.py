"""The three floors import downward only: runtime/ (1) nothing above it, aethergraph/ (2)
runtime/, tui/ (3) both but never the CLI (which starts the dashboard: that would be a circle).

Each module is imported in a fresh interpreter and what it pulled in is read from
``sys.modules``, so an import hidden in another module's import is caught too. Lazy imports
inside functions are not seen here; the documented lazy spots are the package's exports, the
CLI's command dispatch and the dashboard's ``--run``. Every import statement, lazy or not, is
read from the source too: runtime/ names nothing above it, tui/ never the CLI.
"""

from __future__ import annotations

import ast
import json
import pkgutil
from pathlib import Path
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import aethergraph
import aethergraph.runtime
import aethergraph.tui

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.startswith("aethergraph"))))
"""


def modules(package) -> list[str]:
    names = [package.__name__]
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.endswith("__main__"):  # runs a program when imported
            continue
        names.append(info.name)
    return names


def floor(name: str) -> str:
    if name.startswith("aethergraph.runtime"):
        return "runtime"
    if name.startswith("aethergraph.tui"):
        return "tui"
    return "cli" if name.startswith("aethergraph.cli") else "aethergraph"


def probe(name: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, name], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (name, proc.stderr[-2000:])
    return json.loads(proc.stdout)


def imported_by() -> dict[str, list[str]]:
    """What each module of the three floors imports, each in a fresh interpreter."""
    names = modules(aethergraph.runtime) + modules(aethergraph.tui)
    names += [n for n in modules(aethergraph) if floor(n) in ("aethergraph", "cli")]
    names = sorted(set(names))
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(names, pool.map(probe, names)))


def test_no_floor_imports_one_above_it():
    found = imported_by()
    assert len(found) > 60
    allowed = {"runtime": {"runtime"}, "aethergraph": {"runtime", "aethergraph"},
               "cli": {"runtime", "aethergraph", "cli"}, "tui": {"runtime", "aethergraph", "tui"}}
    wrong = []
    for name, pulled in found.items():
        wrong += [f"{name} imports {m}" for m in pulled
                  if m != "aethergraph" and floor(m) not in allowed[floor(name)]]
    assert not wrong, "\n".join(wrong)


def test_the_package_and_ag_help_import_no_command():
    """The lazy spots: ``import aethergraph`` loads no module of it, ``ag --help`` no command."""
    code = ("import sys, aethergraph; a = sorted(m for m in sys.modules if m.startswith('aethergraph.'));"
            "from aethergraph.cli.main import build_parser; build_parser();"
            "print(a, sorted(m for m in sys.modules if m.startswith('aethergraph.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    package, cli = proc.stdout.split("] [")
    assert package == "["
    assert cli.rstrip("]\n").replace("'", "").split(", ") == [
        "aethergraph.cli", "aethergraph.cli.args", "aethergraph.cli.main", "aethergraph.runtime",
        "aethergraph.runtime.exits", "aethergraph.tui", "aethergraph.tui.args"]



def test_the_dashboard_imports_no_writer_before_its_first_paint():
    """``ag tui`` only reads until its first paint: the index it reads through must not pull in
    the log writer, nor trio (the dashboard's trio side starts after the first paint)."""
    code = ("import sys, aethergraph.tui.app; "
            "print(sorted(m for m in ('trio', 'aethergraph.runtime.store.writer') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def statements(package) -> dict[str, set[str]]:
    """Every module each source file of ``package`` names in an import statement, anywhere in
    it (in functions too), relative imports made absolute."""
    root = Path(package.__path__[0])
    out: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package.__name__, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        here = parts if path.name == "__init__.py" else parts[:-1]  # the module's package
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                names.add(module)
                names.update(f"{module}.{a.name}" for a in node.names)
        out[".".join(parts)] = names
    return out


def test_no_import_statement_reaches_up():
    wrong = [f"{m} names {n}" for m, names in statements(aethergraph.runtime).items() for n in names
             if n.startswith("aethergraph") and n != "aethergraph" and floor(n) != "runtime"]
    wrong += [f"{m} names {n}" for m, names in statements(aethergraph.tui).items() for n in names
              if floor(n) == "cli"]
    assert not wrong, "\n".join(wrong)
