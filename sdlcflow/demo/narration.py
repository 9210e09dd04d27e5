"""Telling a person what happens: a step header, what happened, and the evidence behind it.

The scenario talks to a `Narrator`; `RichNarrator` prints for people (spinners while waiting),
`RecordingNarrator` keeps the lines for tests and `--json`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table


class Narrator(Protocol):
    def step(self, number: int, title: str, why: str) -> None: ...

    def say(self, text: str) -> None: ...

    def evidence(self, label: str, value: str) -> None: ...

    def waiting(self, what: str) -> AbstractContextManager[None]: ...

    def passed(self, text: str) -> None: ...

    def failed(self, text: str) -> None: ...

    def table(
        self, title: str, columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]
    ) -> None: ...


@dataclass
class RecordingNarrator:
    """Keeps every line (kind, text); used by the e2e test and by `demo --json`."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    def step(self, number: int, title: str, why: str) -> None:
        self.lines.append(("step", f"{number}. {title}: {why}"))

    def say(self, text: str) -> None:
        self.lines.append(("say", text))

    def evidence(self, label: str, value: str) -> None:
        self.lines.append(("evidence", f"{label}: {value}"))

    @contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        self.lines.append(("wait", what))
        yield

    def passed(self, text: str) -> None:
        self.lines.append(("passed", text))

    def failed(self, text: str) -> None:
        self.lines.append(("failed", text))

    def table(self, title: str, columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
        self.lines.append(("table", f"{title}: {len(rows)} rows"))


class RichNarrator:
    """Rich output for a person watching `make demo`."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()

    def step(self, number: int, title: str, why: str) -> None:
        self.console.print()
        self.console.print(
            Panel(f"[dim]{why}[/dim]", title=f"[bold]Step {number} · {title}", expand=True)
        )

    def say(self, text: str) -> None:
        self.console.print(f"  {text}", markup=False, highlight=False, soft_wrap=True)

    def evidence(self, label: str, value: str) -> None:
        self.console.print(f"    [cyan]{escape(label)}[/cyan] {escape(value)}", highlight=False)

    @contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        with self.console.status(f"[yellow]waiting for {what}"):
            yield

    def passed(self, text: str) -> None:
        self.console.print(f"  [green]✔[/green] {escape(text)}")

    def failed(self, text: str) -> None:
        self.console.print(f"  [bold red]✘ {escape(text)}[/bold red]")

    def table(self, title: str, columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
        table = Table(title=title, show_lines=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row)
        self.console.print(table)
