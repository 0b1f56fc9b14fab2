"""The error screen: what is wrong and what to do, in place of a traceback."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Center, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..problems import Problem


class ProblemScreen(Screen[None]):
    BINDINGS = [("r", "retry", "Try again"), ("q", "app.quit", "Quit")]

    def __init__(self, problem: Problem) -> None:
        super().__init__(classes="problem")
        self.problem = problem

    def compose(self) -> ComposeResult:
        with Center(), Vertical(classes="problem-box"):
            yield Static(Content.styled(self.problem.title, "bold $error"), id="problem-title")
            yield Static(Content(self.problem.detail), id="problem-detail")
            if self.problem.advice:
                yield Static(Content.styled("What to do", "bold"), classes="problem-heading")
                for line in self.problem.advice:
                    yield Static(Content.assemble("• ", line), classes="problem-advice")
            yield Static(Content.styled("r try again · q quit", "$text-muted"), classes="problem-keys")
        yield Footer()

    def action_retry(self) -> None:
        self.query_one("#problem-title", Static).update(Content.styled("Trying again…", "bold $warning"))
        self.app.action_reconnect()  # type: ignore[attr-defined]
