"""Panel 3 — Asks: every question a run is waiting on, and the dialog that answers it.

An answer goes to the runtime that asked, through its sidecar, like any other client's; the
runtime checks it (an option not offered, empty text) and a refusal is shown in the dialog,
which stays open. Asks of runs whose process died are listed too: their answer is kept in the
run's log and used when the run is resumed (the same as ``ag answer`` on an interrupted run).
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, OptionList, Static

from aethergraph.runtime.asks import normalize_answer
from aethergraph.runtime.errors import InvalidAnswer
from aethergraph.runtime.info import AskInfo

from ..format import clip, dur, one_line, plain, visible
from ..messages import AnswerDone, AnswerRequested, AnswerSubmitted, OpenRun
from ..widgets import AsksTable
from .base import ListScreen


def left_text(ask: AskInfo, now: float) -> str:
    remaining = ask.remaining(now)
    return "-" if remaining is None else dur(remaining)


class AsksScreen(ListScreen):
    MODE = "asks"
    TABLE = "asks-table"
    HELP = "Questions runs are waiting on. Enter answers one; o opens its run."
    BINDINGS = [
        Binding("o", "open_run", "Open run"),
    ]
    COLUMNS = (("ask", "ASK", 17), ("run", "RUN", 14), ("graph", "GRAPH", 12), ("kind", "KIND", 10),
               ("prompt", "PROMPT", 0), ("left", "EXPIRES", 8))
    # From 110 columns on the run id is shown whole (23 columns), not its last 13 characters.
    WIDE = (110, {"run": 23})

    def __init__(self) -> None:
        super().__init__()
        self._drawn = -1
        self._drawn_second = 0

    def compose_body(self) -> ComposeResult:
        yield AsksTable("asks-table", self.COLUMNS, wide=self.WIDE)
        yield Static("", id="asks-status", markup=False)

    def sync(self, force: bool = False) -> None:
        if not self.is_mounted or not self.table.laid_out_width:
            return
        table = self.table
        st = self.dash.state
        now = time.time()
        if force or st.asks_version != self._drawn:
            self._drawn = st.asks_version
            keep = table.selected_key()
            table.clear()
            asks = st.all_asks()
            prompt_w, whole_run = table.width_of("prompt"), table.width_of("run") > 14
            for a in asks:
                prompt = Text(clip(a.prompt.replace("\n", " "), prompt_w - 1))
                kind = a.kind if a.runtime_id else f"{a.kind}*"
                run = st.runs.get(a.run_id)
                table.add_row(plain(a.ask_id), plain(a.run_id if whole_run else a.run_id[-13:]),
                              Text(clip(run.graph if run else "", 11)), plain(kind), prompt, left_text(a, now),
                              key=a.ask_id)
            table.restore_cursor(keep)
            status = self.query_one("#asks-status", Static)
            if not asks:
                status.update("No run is waiting on an answer. Questions appear here (and in the top bar) "
                              "as runs ask them.", layout=False)
            else:
                offline = sum(1 for a in asks if not a.runtime_id)
                note = " · * run not live: the answer waits for its resume" if offline else ""
                status.update(f"{len(asks)} waiting · enter to answer{note}", layout=False)
        elif int(now) != self._drawn_second:
            for a in st.all_asks():
                if a.timeout_s is not None:
                    try:
                        table.update_cell(a.ask_id, "left", left_text(a, now))
                    except Exception:
                        pass
        self._drawn_second = int(now)

    def yank_target(self) -> tuple[str, str] | None:
        ask_id = self.table.selected_key()
        return ("ask id", ask_id) if ask_id else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.request(AnswerRequested, event.row_key.value)

    def action_answer(self) -> None:
        self.request(AnswerRequested, self.table.selected_key())

    def action_open_run(self) -> None:
        ask_id = self.table.selected_key()
        st = self.dash.state
        ask = st.asks.get(ask_id) or st.offline_asks.get(ask_id) if ask_id else None
        self.request(OpenRun, ask and ask.run_id)


class AnswerOptions(OptionList):
    """The options of an ask. A digit highlights that option (it does not send: enter does,
    and the dialog says beforehand what enter will send)."""

    BINDINGS = [Binding(str(n), f"pick({n})", f"Option {n}", show=False) for n in range(1, 10)]

    def action_pick(self, number: int) -> None:
        if 1 <= number <= self.option_count:
            self.highlighted = number - 1


class AnswerModal(ModalScreen[str | None]):
    """Answer one ask: pick an option (arrows or its number) or type; enter sends what the
    "enter sends" line shows; esc closes without answering."""

    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, ask: AskInfo) -> None:
        super().__init__()
        self.ask = ask
        self._closed_note = False

    def compose(self) -> ComposeResult:
        a = self.ask
        with Vertical(id="answer-dialog", classes="dialog"):
            title = Text(no_wrap=True, overflow="ellipsis")
            title.append(f"{one_line(a.kind.upper())} ASK ", style="bold")
            title.append(one_line(a.ask_id))
            title.append(f"  run {one_line(a.run_id)}", style="dim")
            yield Static(title, id="answer-title")
            yield Static(Text(one_line(a.node), style="dim"), id="answer-node")
            yield Static(Text(visible(a.prompt)), id="answer-prompt")
            if a.options:
                yield AnswerOptions(*[Text(f"{i}. {one_line(o)}") for i, o in enumerate(a.options, 1)],
                                    id="answer-options", compact=True)
            placeholder = "type the answer, enter sends" if not a.options else "or type an option (or its number)"
            yield Input(placeholder=placeholder, id="answer-input", compact=True)
            if a.options:
                yield Static("", id="answer-pending", markup=False)
            yield Static("", id="answer-error", markup=False)
            yield Static("", id="answer-deadline", markup=False)
            hint = ("1-9: pick · enter: send · tab: options/typing · esc: close" if a.options
                    else "enter: send · esc: close")
            yield Static(hint, classes="hint", markup=False)

    def on_mount(self) -> None:
        if self.ask.options:
            self.query_one("#answer-options", OptionList).focus()
        else:
            self.query_one("#answer-input", Input).focus()
        self._show_pending()
        self._tick()
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        a = self.ask
        st = self.app.state  # type: ignore[attr-defined]
        deadline = self.query_one("#answer-deadline", Static)
        still_open = a.ask_id in st.asks or a.ask_id in st.offline_asks
        if not still_open:
            if not self._closed_note:
                self._closed_note = True
                self.query_one("#answer-error", Static).update(
                    "This ask is closed: answered elsewhere, expired, or its run ended.")
            deadline.update("")
            return
        left = a.remaining(time.time())
        if left is None:
            text = "no deadline" if a.runtime_id else "run not live: the answer is kept for `ag resume`"
        else:
            text = f"expires in {dur(left)}"
        deadline.update(text)

    # -- what enter sends ------------------------------------------------------------------------

    def pending(self) -> tuple[str | None, str]:
        """(the value enter would send now, or None; the line saying so). Typed text wins when
        the typing line has focus and is not empty; otherwise the highlighted option."""
        a = self.ask
        typed = self.query_one("#answer-input", Input)
        if self.focused is typed and typed.value.strip():
            try:
                value = normalize_answer(a.kind, a.options, typed.value)
            except InvalidAnswer as exc:
                return typed.value, f"✗ {one_line(str(exc))}"
            return typed.value, f"enter sends: {a.options.index(value) + 1}. {one_line(value)}"
        options = self.query_one("#answer-options", OptionList)
        i = options.highlighted
        if i is None:
            return None, "pick an option (↑/↓ or its number)"
        return a.options[i], f"enter sends: {i + 1}. {one_line(a.options[i])}"

    def _show_pending(self) -> None:
        if self.ask.options and self.is_mounted:
            self.query_one("#answer-pending", Static).update(Text(self.pending()[1], style="bold"))

    def on_option_list_option_highlighted(self, _: OptionList.OptionHighlighted) -> None:
        self._show_pending()

    def on_input_changed(self, _: Input.Changed) -> None:
        self._show_pending()

    def on_descendant_focus(self, _) -> None:
        self._show_pending()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self._send(self.ask.options[event.option_index])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._send(event.value)

    def _send(self, value: str) -> None:
        self.query_one("#answer-error", Static).update("sending…")
        self.post_message(AnswerSubmitted(self.ask, value, self))

    def on_answer_done(self, msg: AnswerDone) -> None:
        if msg.outcome.error:  # refused: said here, and the dialog stays open for another try
            self.query_one("#answer-error", Static).update(visible(f"✗ {msg.outcome.error}"))
        else:
            self.dismiss(msg.outcome.answer)

    def action_close(self) -> None:
        self.dismiss(None)
