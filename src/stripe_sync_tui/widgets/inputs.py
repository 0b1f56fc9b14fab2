"""`ConsoleInput`: an Input whose cursor blinks unless the console is set still (tests, screenshots)."""

from __future__ import annotations

from textual.widgets import Input


class ConsoleInput(Input):
    def on_mount(self) -> None:
        settings = getattr(self.app, "settings", None)
        self.cursor_blink = settings is None or bool(settings.cursor_blink)
