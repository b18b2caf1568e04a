"""ask_files: a file answered at the console, by `ag answer --file` (live and for an
interrupted run), checked with clear refusals, stored as artifacts, never doubled on resume."""

from __future__ import annotations

import hashlib
import io
import json
import os
import textwrap

import pytest

from aethergraph import graph_fn
from aethergraph.console import ConsolePrinter, ConsoleSource, StdinLines
from aethergraph.runtime import events as ev
from aethergraph.runtime.asks import check_path, normalize_files, store_paths
from aethergraph.runtime.errors import InvalidAnswer
from aethergraph.runtime.store.artifacts import BlobStore
from aethergraph.runtime.store.logfile import read_events

from .conftest import ag, crash_run, rt_open, run_events
from .agproc import wait_until
from .test_sidecar import pending_asks


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "data dir" / "measurements.csv"
    path.parent.mkdir()
    path.write_text("a,b\n1,2\n")
    return path


def test_paths_are_checked_with_a_reason(tmp_path, csv_file, layout):
    spec = ev.FileAskSpec(accept=["*.csv"], max_bytes=100)
    with pytest.raises(InvalidAnswer, match="no file at"):
        check_path(str(tmp_path / "missing.csv"), spec)
    with pytest.raises(InvalidAnswer, match="is a directory"):
        check_path(str(tmp_path), spec)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InvalidAnswer, match=r"not an accepted file \(accepts \*\.csv\)"):
        check_path(str(tmp_path / "notes.txt"), spec)
    (tmp_path / "big.csv").write_bytes(b"x" * 101)
    with pytest.raises(InvalidAnswer, match="is 101 bytes; this ask takes files up to 100 bytes"):
        check_path(str(tmp_path / "big.csv"), spec)
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(InvalidAnswer, match="not a regular file"):
        check_path(str(tmp_path / "pipe.csv"), spec)
    assert check_path(str(csv_file), spec) == csv_file
    # mime patterns and extensions
    assert check_path(str(csv_file), ev.FileAskSpec(accept=["text/*"])) == csv_file
    assert check_path(str(csv_file), ev.FileAskSpec(accept=[".CSV"])) == csv_file
    blobs = BlobStore(layout)
    with pytest.raises(InvalidAnswer, match="2 files given; this ask takes one"):
        store_paths(blobs, [str(csv_file), str(csv_file)], spec)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_refused(tmp_path):
    path = tmp_path / "secret.csv"
    path.write_text("x")
    path.chmod(0)
    with pytest.raises(InvalidAnswer, match="not readable"):
        check_path(str(path), ev.FileAskSpec())


def test_a_stored_answer_is_checked_against_the_store(layout, csv_file):
    blobs = BlobStore(layout)
    spec = ev.FileAskSpec(accept=["*.csv"])
    good = store_paths(blobs, [str(csv_file)], spec)
    assert normalize_files(good, spec, blobs) == good
    (entry,) = json.loads(good)
    forged = json.dumps([{**entry, "sha256": "0" * 64}])
    with pytest.raises(InvalidAnswer, match="is not in this store"):
        normalize_files(forged, spec, blobs)
    with pytest.raises(InvalidAnswer, match="must not contain"):
        normalize_files(json.dumps([{**entry, "name": "../../etc/passwd"}]), spec, blobs)
    with pytest.raises(InvalidAnswer, match="not 1 bytes|bytes in the store"):
        normalize_files(json.dumps([{**entry, "size": 1}]), spec, blobs)


async def test_console_answer_refuses_a_missing_file_then_stores_the_next(home, layout, tmp_path, csv_file):
    out = io.StringIO()
    lines = StdinLines(io.StringIO(f"{tmp_path / 'nope.csv'}\n{csv_file}\n"))

    @graph_fn(name="upload")
    async def upload(*, context):
        ref = await context.channel().ask_files("Measurements?", accept=["*.csv"])
        return {"ref": ref, "text": await context.artifacts().load_text(ref)}

    async with rt_open(home) as rt:
        rt.asks.add_source(ConsoleSource(lines, stream=out))
        rt.subscribe(ConsolePrinter(out), types=list(ConsolePrinter.TYPES))
        result = await upload()
    sha = hashlib.sha256(csv_file.read_bytes()).hexdigest()
    assert result == {"ref": f"ag://artifact/{sha}", "text": "a,b\n1,2\n"}
    shown = out.getvalue()
    assert "❓ Measurements?  (a file path; accepts *.csv; up to 100 MB each)" in shown
    assert f"✗ no file at '{tmp_path / 'nope.csv'}'" in shown
    (path,) = list(layout.iter_logs())
    events = run_events(layout, path.stem)
    (answered,) = [e for e in events if isinstance(e, ev.AskAnswered)]
    assert answered.by == "console"
    assert json.loads(answered.answer) == [
        {"sha256": sha, "name": "measurements.csv", "size": 8, "mime": "text/csv"}]
    (art,) = [e for e in events if isinstance(e, ev.ArtifactWritten)]
    assert (art.name, art.kind, art.size, art.node) == ("measurements.csv", "upload", 8, "upload")


async def test_multiple_files_from_one_console_line(home, tmp_path, csv_file):
    other = tmp_path / "other.csv"
    other.write_text("c\n3\n")
    lines = StdinLines(io.StringIO(f"'{csv_file}' {other}\n"))

    @graph_fn(name="upload")
    async def upload(*, context):
        refs = await context.channel().ask_files("Files?", multiple=True)
        return [await context.artifacts().load_text(r) for r in refs]

    async with rt_open(home) as rt:
        rt.asks.add_source(ConsoleSource(lines, stream=io.StringIO()))
        assert await upload() == ["a,b\n1,2\n", "c\n3\n"]


UPLOADER = textwrap.dedent(
    """
    from aethergraph import graph_fn

    @graph_fn(name="upload")
    async def upload(*, context):
        refs = await context.channel().ask_files("Which CSVs?", accept=["*.csv"], multiple=True,
                                                 max_bytes=1000)
        texts = [await context.artifacts().load_text(r) for r in refs]
        await context.channel().send_text("got " + " + ".join(t.strip() for t in texts))
        return {"n": len(refs)}
    """
)


@pytest.mark.slow
def test_ag_answer_file_answers_a_live_run(tmp_path, csv_file, spawn_ag):
    script = tmp_path / "upload.py"
    script.write_text(UPLOADER)
    other = tmp_path / "b.csv"
    other.write_text("second")
    (tmp_path / "big.csv").write_bytes(b"x" * 1001)
    proc = spawn_ag("run", f"{script}:upload")
    try:
        (ask,) = wait_until(lambda: pending_asks(tmp_path), what="the files ask")
        assert ask["kind"] == "files" and ask["options"] == ["*.csv"]
        missing = ag("answer", ask["ask_id"], "--file", str(tmp_path / "gone.csv"), cwd=tmp_path)
        assert missing.returncode == 2 and "no file at" in missing.stderr and "stays open" in missing.stderr
        # refused by the runtime, which knows the ask's size limit
        big = ag("answer", ask["ask_id"], "--file", str(tmp_path / "big.csv"), cwd=tmp_path)
        assert big.returncode != 0 and "up to 1000 bytes" in big.stderr, big.stderr
        assert pending_asks(tmp_path), "the ask stays open after refusals"
        ok = ag("answer", ask["ask_id"], "--file", str(csv_file), "--file", str(other), cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        assert "measurements.csv (8 bytes), b.csv (6 bytes)" in ok.stdout
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "got a,b\n1,2 + second" in out


@pytest.mark.slow
def test_ag_answer_file_for_an_interrupted_run_then_resume_records_it_once(tmp_path, layout, csv_file):
    crash_run(tmp_path, "upload.py", UPLOADER, "upload", "killafter:ask_opened")
    (ask,) = json.loads(ag("asks", "--json", cwd=tmp_path).stdout)
    refused = ag("answer", ask["ask_id"], "--file", str(tmp_path), cwd=tmp_path)
    assert refused.returncode == 2 and "is a directory" in refused.stderr
    answered = ag("answer", ask["ask_id"], "--file", str(csv_file), cwd=tmp_path)
    assert answered.returncode == 0 and "ag resume" in answered.stdout, answered.stderr
    resumed = ag("resume", ask["run_id"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "got a,b\n1,2" in resumed.stdout
    events = read_events(layout.run_log(ask["run_id"]))
    assert len([e for e in events if isinstance(e, ev.ArtifactWritten)]) == 1
    assert len([e for e in events if isinstance(e, ev.AskAnswered)]) == 1


# -- send_image / send_file ---------------------------------------------------------------------


def tiny_png(width: int, height: int) -> bytes:
    """A real PNG (grey pixels), built by hand: no imaging library needed."""
    import struct
    import zlib

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


async def test_send_image_and_send_file(home, layout, tmp_path):
    png = tiny_png(3, 2)
    report = tmp_path / "report.txt"
    report.write_text("all good")

    @graph_fn(name="show")
    async def show(*, context):
        ch = context.channel()
        ref = await ch.send_image(png, caption="the plot")
        again = await ch.send_image(ref)  # a ref: not stored twice, named as it was
        with pytest.raises(ValueError, match="not an image"):
            await ch.send_image(b"plain text, not pixels")
        f1 = await ch.send_file(report)
        f2 = await ch.send_file(file_bytes=b"raw", filename="raw.bin")
        with pytest.raises(FileNotFoundError, match="no file at"):
            await ch.send_file(tmp_path / "missing.txt")
        return [ref, again, f1, f2]

    async with rt_open(home):
        refs = await show()
    assert refs[0] == refs[1]
    assert report.read_text() == "all good"  # copied, never moved
    (path,) = list(layout.iter_logs())
    events = run_events(layout, path.stem)
    msgs = [e for e in events if isinstance(e, ev.MessageSent)]
    assert [m.kind for m in msgs] == ["image", "image", "file", "file"]
    first = msgs[0].data
    assert (msgs[0].text, first["mime"], first["width"], first["height"], first["size"]) == (
        "the plot", "image/png", 3, 2, len(png))
    assert first["summary"] == f"image.png (3×2, {len(png)} bytes, image/png)"
    assert msgs[1].data["name"] == "image.png"
    assert msgs[2].data["name"] == "report.txt" and msgs[3].data["name"] == "raw.bin"
    arts = [e for e in events if isinstance(e, ev.ArtifactWritten)]
    assert [(a.name, a.kind) for a in arts] == [("image.png", "image"), ("report.txt", "file"), ("raw.bin", "file")]


def test_image_info_reads_sizes_from_headers():
    import struct

    from aethergraph.artifacts import image_info

    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 480, 640, 3) + b"\x00" * 6
    assert image_info(b"\xff\xd8" + app0 + sof) == ("image/jpeg", 640, 480)
    assert image_info(b"GIF89a" + struct.pack("<HH", 7, 5) + b"\x00" * 4) == ("image/gif", 7, 5)
    assert image_info(tiny_png(9, 4)) == ("image/png", 9, 4)
    assert image_info(b"%PDF-1.7") is None


# -- the dashboard's file picker (new screen; hooked into the app by the dashboard's owners) -----


@graph_fn(name="tui_uploader")
async def tui_uploader(*, context) -> dict:
    ref = await context.channel().ask_files("Which CSV?", accept=["*.csv"])
    return {"text": await context.artifacts().load_text(ref)}


def test_dashboard_file_picker_refuses_then_answers(home, layout, tmp_path):
    from textual.widgets import Input, Static

    from aethergraph.tui.app import AetherGraphApp
    from aethergraph.tui.screens.file_picker import FilePickerModal

    from .test_tui_support import drive, until

    pick = tmp_path / "pick"
    pick.mkdir()
    (pick / "data.csv").write_text("x,y\n")
    (pick / "notes.txt").write_text("not a csv")
    app = AetherGraphApp(poll_s=0.2, run=tui_uploader)
    dismissed: list = []

    def text(widget) -> str:
        return str(widget.render())

    async def scenario(pilot):
        (ask,) = await until(pilot, lambda: [a for a in app.state.asks.values() if a.kind == "files"], "the files ask")
        app.push_screen(FilePickerModal(ask, root=pick), dismissed.append)
        await until(pilot, lambda: isinstance(app.screen, FilePickerModal), "the picker")
        picker = app.screen
        await until(pilot, lambda: picker.query("#files-error"), "the picker drawn")
        error = picker.query_one("#files-error", Static)
        picker.query_one("#files-input", Input).focus()
        await pilot.press(*str(pick / "missing.csv"), "enter")
        await until(pilot, lambda: "no file at" in text(error), "the refusal of a missing file")
        picker.query_one("#files-input", Input).value = ""
        await pilot.press(*str(pick / "notes.txt"), "enter")
        await until(pilot, lambda: "not an accepted file (accepts *.csv)" in text(error), "the refusal of a .txt")
        # the directory tree: root, then data.csv, notes.txt (files sorted by name)
        from textual.widgets import DirectoryTree

        tree = picker.query_one(DirectoryTree)
        tree.focus()
        await until(pilot, lambda: len(tree.root.children) == 2, "the tree's listing")
        await pilot.press("down", "enter")
        await until(pilot, lambda: "picked: data.csv" in text(picker.query_one("#files-picked", Static)), "the pick")
        await pilot.press("s")
        await until(pilot, lambda: dismissed, "the answer")
        await until(pilot, lambda: app.hosted_result is not None, "the hosted run's end")

    drive(app, scenario)
    assert app.hosted_result.status == "succeeded", app.hosted_result.error
    (answer,) = dismissed
    assert json.loads(answer)[0]["name"] == "data.csv"
    run_id = app.hosted_result.run_id
    events = run_events(layout, run_id)
    (answered,) = [e for e in events if isinstance(e, ev.AskAnswered)]
    assert answered.by == "ag tui (sidecar)"
    finished = [e for e in events if isinstance(e, ev.RunFinished)][-1]
    assert finished.outputs == {"text": "x,y\n"}


async def test_scripted_answer_is_a_path_checked_like_any_other(home, tmp_path, csv_file, capsys):
    @graph_fn(name="upload")
    async def upload(*, context):
        ref = await context.channel().ask_files("CSV?", accept=[".csv"])
        return await context.artifacts().load_text(ref)

    async with rt_open(home, answers=[str(tmp_path / "nope.csv"), str(csv_file)]):
        assert await upload() == "a,b\n1,2\n"
    assert "no file at" in capsys.readouterr().err  # the first scripted answer, refused
