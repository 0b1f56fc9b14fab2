"""`ConsoleFooter`: Textual's footer, rebuilt only when the keys it shows change.

Textual's `Footer` recomposes all its key widgets whenever the screen's bindings are updated, which
includes every time its screen is shown again: switching screens cost a few dozen widget mounts each
time. A screen's keys rarely change between two visits, so the rebuild is skipped when they did not.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Footer


class ConsoleFooter(Footer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keys_shown: tuple | None = None

    def bindings_changed(self, screen: Screen) -> None:
        keys = tuple((binding.key, binding.action, binding.description, enabled, tooltip)
                     for _, binding, enabled, tooltip in screen.active_bindings.values() if binding.show)
        will_rebuild = screen.app.app_focus and self.is_attached and screen is self.screen
        if will_rebuild and keys == self._keys_shown:
            return
        if will_rebuild:
            self._keys_shown = keys
        super().bindings_changed(screen)
