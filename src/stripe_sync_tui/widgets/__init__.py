"""Widgets of the console: nouns, one live panel each."""
