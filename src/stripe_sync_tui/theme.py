"""Colour by meaning: theme variables resolved to Rich styles for cells and feed lines.

Rich text (DataTable cells, line-API widgets) cannot read `$success`; this resolves the current
theme's variable instead, so the colours follow the theme and no hex value appears in our code.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.app import App
from textual.color import Color

_CACHE: dict[tuple[int, str, str, bool], Style] = {}


def meaning_style(app: App, meaning: str, *, bold: bool = False) -> Style:
    key = (id(app), app.theme, meaning, bold)
    style = _CACHE.get(key)
    if style is None:
        values = app.get_css_variables()
        if meaning == "text-muted":
            colour = Color.parse(values["background"]).blend(Color.parse(values["foreground"]), 0.6)
            style = Style(color=colour.rich_color, bold=bold)
        elif meaning in values:
            style = Style(color=Color.parse(values[meaning]).rich_color, bold=bold)
        else:
            style = Style(bold=bold)
        _CACHE[key] = style
    return style


def styled(app: App, text: str, meaning: str | None = None, *, bold: bool = False) -> Text:
    """Plain text (never parsed as markup) in the colour of its meaning."""
    if meaning is None:
        return Text(text, style=Style(bold=True) if bold else "")
    return Text(text, style=meaning_style(app, meaning, bold=bold))
