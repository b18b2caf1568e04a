"""The `ag` command line as a user meets it: real processes, one-line errors, exit codes."""

from __future__ import annotations

import json
import textwrap

import pytest

from .conftest import ag

GRAPH = textwrap.dedent(
    """
    from aethergraph import graph_fn, tool

    @tool(outputs=["doubled"])
    def double(x):
        return 2 * x

    @graph_fn(name="calc")
    async def calc(x: int, *, context):
        await context.channel().send_text(f"got {x}")
        await context.memory().record("calc", {"x": x}, tags=["cli"])
        return await double(x)

    @graph_fn(name="boom")
    async def boom(*, context):
        raise RuntimeError("kaboom")
    """
)


@pytest.fixture
def graph_file(tmp_path):
    path = tmp_path / "graphs.py"
    path.write_text(GRAPH)
    return path


def test_run_then_runs_then_show(tmp_path, graph_file):
    proc = ag("run", f"{graph_file}:calc", "--input", '{"x": 21}', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "got 21"
    assert json.loads(proc.stdout.split("\n", 1)[1]) == {"doubled": 42}
    run_id = proc.stderr.split()[1]
    assert proc.stderr.strip() == f"run {run_id} succeeded"

    runs = ag("runs", cwd=tmp_path)
    assert runs.returncode == 0
    header, row = runs.stdout.splitlines()
    assert header.split()[:3] == ["RUN", "GRAPH", "STATUS"]
    assert row.split()[:3] == [run_id, "calc", "SUCCEEDED"]

    shown = ag("show", run_id, cwd=tmp_path)
    assert shown.returncode == 0
    assert "calc/double" in shown.stdout and "memory_recorded" in shown.stdout
    data = json.loads(ag("show", run_id, "--json", cwd=tmp_path).stdout)
    assert data["run"]["status"] == "succeeded"
    assert [n["path"] for n in data["run"]["nodes"]] == ["calc", "calc/double"]
    assert data["events"][0]["type"] == "run_started"


def test_failed_run_exits_1_with_the_error(tmp_path, graph_file):
    proc = ag("run", f"{graph_file}:boom", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith("failed: RuntimeError: kaboom (in node boom)")
    out = json.loads(ag("run", f"{graph_file}:boom", "--json", cwd=tmp_path).stdout)
    assert out["status"] == "failed" and out["error"] == {"type": "RuntimeError", "message": "kaboom (in node boom)"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.py:fn"], "no such file"),
        (["run", "GRAPHS:nope"], "has no attribute 'nope'"),
        (["run", "no_colon_here"], "must look like path/to/file.py:function"),
        (["run", "not_a_real_module_xyz:fn"], "cannot import module"),
        (["run", "GRAPHS:calc", "--input", "{bad json"], "--input is not valid JSON"),
        (["run", "GRAPHS:calc", "--input", "[1, 2]"], "--input must be a JSON object"),
        (["run", "GRAPHS:calc", "--input", '{"y": 1}'], "inputs do not fit calc"),
        (["show", "20261125-000000-abcdef"], "unknown run id: 20261125-000000-abcdef"),
        (["show", "../../etc/passwd"], "unknown run id"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(tmp_path, graph_file, args, message):
    ag("run", f"{graph_file}:calc", "--input", '{"x": 1}', cwd=tmp_path)  # a store exists
    args = [a.replace("GRAPHS", str(graph_file)) for a in args]
    proc = ag(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ag: ") and message in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("limit", ["0", "-5", "ten"])
def test_a_limit_must_be_a_positive_whole_number(tmp_path, limit):
    proc = ag("memory", "query", "--limit", limit, cwd=tmp_path)
    assert proc.returncode == 2
    assert "argument --limit/-n:" in proc.stderr and "Traceback" not in proc.stderr


def test_runs_without_a_store_says_so(tmp_path):
    proc = ag("runs", "--home", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "no store at" in proc.stderr


def test_help_lists_commands():
    proc = ag("--help")
    assert proc.returncode == 0
    for cmd in ("run", "runs", "show"):
        assert cmd in proc.stdout


ARTS = textwrap.dedent(
    """
    from aethergraph import graph_fn

    @graph_fn(name="arts")
    async def arts(*, context):
        a = context.artifacts()
        ref = await a.write_text("report/summary.txt", content="all good\\n")
        await context.memory().record("done", {"ref": ref}, tags=["cli"])
        return {"ref": ref}
    """
)


def test_store_commands(tmp_path):
    script = tmp_path / "arts.py"
    script.write_text(ARTS)
    run = ag("run", f"{script}:arts", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    ref = json.loads(run.stdout.strip().splitlines()[-1])["outputs"]["ref"]

    ls = ag("artifacts", "ls", cwd=tmp_path)
    assert ref in ls.stdout and "report/summary.txt" in ls.stdout
    assert ag("artifacts", "cat", ref, cwd=tmp_path).stdout == "all good\n"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    exported = ag("artifacts", "export", ref, str(out_dir), cwd=tmp_path)
    assert exported.returncode == 0
    assert (out_dir / "report" / "summary.txt").read_text() == "all good\n"
    again = ag("artifacts", "export", ref, str(out_dir / "report" / "summary.txt"), cwd=tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr

    bad = ag("artifacts", "cat", "ag://artifact/../../etc/passwd", cwd=tmp_path)
    assert bad.returncode == 2 and "not an artifact ref" in bad.stderr
    missing = ag("artifacts", "cat", "0" * 64, cwd=tmp_path)
    assert missing.returncode == 2 and "not in this store" in missing.stderr

    q = ag("memory", "query", "--kind", "done", "--tag", "cli", "--since", "1h", "--json", cwd=tmp_path)
    events = [json.loads(line) for line in q.stdout.splitlines()]
    assert [e["data"]["ref"] for e in events] == [ref]
    none = ag("memory", "query", "--text", "nothing-like-this", cwd=tmp_path)
    assert none.stdout.strip() == "no matching memory events"
    badtime = ag("memory", "query", "--since", "yesterday-ish", cwd=tmp_path)
    assert badtime.returncode == 2 and "cannot read 'yesterday-ish' as a time" in badtime.stderr

    assert ag("check", cwd=tmp_path).returncode == 0
    assert ag("index", "rebuild", cwd=tmp_path).returncode == 0
