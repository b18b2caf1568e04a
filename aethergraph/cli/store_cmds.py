"""Store commands: ``ag memory query``, ``ag artifacts ls|cat|export``, ``ag index rebuild``,
``ag check``. They read the store directly; no runtime needs to be running."""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from aethergraph.runtime.describe import short, when
from aethergraph.runtime.errors import StoreError
from aethergraph.runtime.exits import EXIT_OK, EXIT_RUN_FAILED
from aethergraph.runtime.store.artifacts import BlobStore, check_name, sha_from_ref
from aethergraph.runtime.store.check import check_store
from aethergraph.runtime.store.index import Index, is_corruption, set_aside
from aethergraph.runtime.store.query import MemoryQuery

from .history_cmds import _layout, table
from .main import CliError


def _index(layout: Any) -> Index:
    index = Index(layout)
    index.catch_up()
    return index


def cmd_memory_query(args: Any) -> int:
    layout = _layout(args.home)
    query = MemoryQuery(kinds=args.kind, tags=args.tag, entities=args.entity, run_id=args.run, graph=args.graph,
                        node=args.node, since=args.since, until=args.until, text=args.text, limit=args.limit,
                        order=args.order)  # a bad time: refused here, before the index is opened
    index = _index(layout)
    try:
        events = index.memory(query)
    finally:
        index.close()
    if args.json:
        for e in events:
            print(msgspec.json.encode(e).decode())
        return EXIT_OK
    if not events:
        print("no matching memory events")
        return EXIT_OK
    rows = [[when(e.ts), e.run_id, e.node, e.kind, ",".join(e.tags), short(e.data, 60)] for e in events]
    print(table(rows, ["TIME", "RUN", "NODE", "KIND", "TAGS", "DATA"]))
    return EXIT_OK


def cmd_artifacts(args: Any) -> int:
    layout = _layout(args.home)
    if args.artifacts_command == "ls":
        index = _index(layout)
        try:
            rows = index.artifact_rows(run_id=args.run, kind=args.kind, limit=args.limit)
        finally:
            index.close()
        if args.json:
            for a, pinned in rows:
                d = msgspec.to_builtins(a)
                d["pinned"] = pinned
                print(msgspec.json.encode(d).decode())
            return EXIT_OK
        if not rows:
            print("no artifacts")
            return EXIT_OK
        out = [[a.ref, a.name, str(a.size), a.mime, a.run_id, a.node + (f" ({a.tool})" if a.tool else ""),
                when(a.ts), "pinned" if p else ""] for a, p in rows]
        print(table(out, ["REF", "NAME", "BYTES", "MIME", "RUN", "NODE", "WRITTEN", ""]))
        return EXIT_OK
    blobs = BlobStore(layout)
    try:
        sha = sha_from_ref(args.ref)
        if args.artifacts_command == "cat":
            data = blobs.read_bytes(sha)
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return EXIT_OK
        # export
        target = Path(args.path)
        if target.is_dir():
            index = _index(layout)
            try:
                rows = index.artifact_rows(ref=sha, limit=1)
            finally:
                index.close()
            name = check_name(rows[0][0].name) if rows else sha
            target = target / name
        src = blobs.open_blob(sha)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _export(src, target, force=args.force)
        finally:
            os.close(src)
        print(target)
        return EXIT_OK
    except StoreError as exc:
        raise CliError(str(exc)) from None


def _export(src: int, target: Path, *, force: bool) -> None:
    """Copy the blob (an open descriptor) to ``target``. Without ``force`` only a new file is
    created (``O_EXCL``: not over a file, not through a symlink, dangling or not). With it, a
    copy is written beside the target and renamed over it, so an existing link is replaced,
    never written through."""
    if not force:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            raise CliError(f"{target} exists (use --force to overwrite)") from None
        try:
            with open(src, "rb", closefd=False) as i, open(fd, "wb") as o:
                shutil.copyfileobj(i, o, 1 << 20)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".ag-export")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # an exported file is the user's, like any cp
        with open(src, "rb", closefd=False) as i, open(fd, "wb") as o:
            shutil.copyfileobj(i, o, 1 << 20)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_index(args: Any) -> int:
    layout = _layout(args.home)
    index = Index(layout)
    bad: list = []
    t0 = time.perf_counter()
    try:
        try:
            n = index.rebuild(bad_lines=bad)
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            # Damage deeper than opening sees (a bad page): the repair must still work.
            index.close()
            aside = set_aside(layout)
            print(f"warning: {layout.index_path} is damaged ({exc}); set aside as "
                  f"{aside.name if aside else '?'}", file=sys.stderr)
            index = Index(layout)
            bad.clear()
            n = index.rebuild(bad_lines=bad)
        memory = index.memory_count()
    finally:
        index.close()
    took = time.perf_counter() - t0
    for b in bad:
        print(f"warning: {b}", file=sys.stderr)
    print(f"rebuilt the index from the logs: {n} events ({memory} memory events) in {took:.1f}s")
    return EXIT_OK


def cmd_check(args: Any) -> int:
    layout = _layout(args.home)
    report = check_store(layout, verify_blobs=args.verify_blobs)
    for p in report.problems:
        print(p)
    verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"checked {report.logs} logs, {report.events} events: {verdict}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_RUN_FAILED
