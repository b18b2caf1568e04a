"""The installed package lives under its own name (issue 15, item 7).

The repository keeps its floors as top-level folders (runtime/, tui/, aethergraph/), but the wheel
installs them as ``aethergraph.runtime`` and ``aethergraph.tui``: a generic top-level name such as
``runtime`` may belong to any other distribution. The proof is a real install into a fresh venv
that already has a module named ``runtime`` (and one named ``tui``), then the tutorial run there,
from a folder outside the repository.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
FLOORS = ("aethergraph", "runtime", "tui")

pytestmark = pytest.mark.slow


def _site_packages(venv: pathlib.Path) -> pathlib.Path:
    out = subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True)
    return pathlib.Path(out.stdout.strip())


def test_no_source_file_imports_the_bare_floor_names():
    """Inside the repository `import runtime` would still work (the folder is on the path from the
    repository root), so a slip would pass every other test: look for it in the text."""
    bare = re.compile(r"^\s*(from|import)\s+(runtime|tui)(\s|\.|$)", re.M)
    offenders = []
    for folder in ("aethergraph", "runtime", "tui", "tests", "bench", "examples"):
        for path in (REPO / folder).rglob("*.py"):
            if ".peers-venv" in path.parts:
                continue
            for m in bare.finditer(path.read_text(encoding="utf-8")):
                line = path.read_text(encoding="utf-8").count("\n", 0, m.start()) + 1
                offenders.append(f"{path.relative_to(REPO)}:{line}")
    assert offenders == []


def test_every_package_folder_is_listed_for_the_wheel():
    """pyproject lists the packages by hand (the package-dir mapping needs it): a new subpackage
    left out of the list would be missing from the wheel."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for floor in FLOORS:
        for init in (REPO / floor).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO).parts
            name = ".".join(rel) if floor == "aethergraph" else ".".join(("aethergraph", *rel))
            found.add(name)
    assert found == listed


def test_wheel_installs_beside_foreign_runtime_and_tui_modules(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    site = _site_packages(venv)
    # Somebody else's `runtime` and `tui`, installed first.
    (site / "runtime.py").write_text("OWNER = 'someone else'\n")
    (site / "tui").mkdir()
    (site / "tui" / "__init__.py").write_text("OWNER = 'someone else too'\n")
    # Our dependencies come from the test's own environment (no second download of textual &c.),
    # appended after the venv's site-packages so the foreign modules above come first.
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    # Build from a copy: a build writes build/ and *.egg-info next to the sources.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for floor in FLOORS:
        shutil.copytree(REPO / floor, src / floor, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                    "--no-deps", "--quiet", "--disable-pip-version-check", str(src)],
                   check=True, capture_output=True, text=True, timeout=300)

    installed = sorted(p.name for p in site.iterdir())
    assert "aethergraph" in installed
    # Ours claimed nothing else at the top level: the foreign modules are untouched.
    assert (site / "runtime.py").read_text() == "OWNER = 'someone else'\n"
    assert sorted((site / "tui").iterdir()) == [site / "tui" / "__init__.py"]
    assert (site / "aethergraph" / "runtime" / "engine.py").exists()
    assert (site / "aethergraph" / "tui" / "app.tcss").exists()

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["AETHERGRAPH_HOME"] = str(tmp_path / "home")
    work = tmp_path / "elsewhere"
    work.mkdir()
    probe = (
        "import runtime, tui; assert runtime.OWNER == 'someone else' and tui.OWNER == 'someone else too'\n"
        "import aethergraph, aethergraph.runtime.engine, aethergraph.tui.app\n"
        "assert aethergraph.runtime.engine.__file__.startswith(%r)\n"
        "print('ok')\n" % str(site)
    )
    out = subprocess.run([venv / "bin" / "python", "-c", probe], cwd=work, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr

    # The tutorial, end to end, by the installed `ag` — beside the foreign modules.
    tutorial = shutil.copy(REPO / "examples" / "tutorial_submit_poll_notify.py", work / "tutorial.py")
    env.update(AG_DEMO_FAIL_RATE="0", AG_DEMO_TIME_SCALE="0.01")
    run = subprocess.run([venv / "bin" / "python", tutorial], cwd=work, env=env,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    listed = subprocess.run([venv / "bin" / "ag", "runs", "--json"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert '"succeeded"' in listed.stdout
