"""The core never loads the console or the emulator; the emulator never loads the core."""

from __future__ import annotations

import json
import subprocess
import sys

# `click` is here only as Flask's dependency (the README's example runs in the suite); when it is
# installed, httpx (which the Stripe SDK imports) loads its command line and with it `rich`. A
# deployment has no click: the probe imports as if it were absent, so `rich` still means our import.
PROBE = """
import importlib, json, pkgutil, sys
sys.modules["click"] = None
package = importlib.import_module(sys.argv[1])
for module in pkgutil.walk_packages(package.__path__, sys.argv[1] + "."):
    importlib.import_module(module.name)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def _loaded_by(package: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", PROBE, package], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def test_core_loads_neither_textual_nor_the_console_nor_the_emulator():
    loaded = _loaded_by("stripe_sync_core")
    assert not loaded & {"textual", "stripe_sync_tui", "stripe_sync_emulator", "rich"}


def test_emulator_does_not_load_the_core():
    loaded = _loaded_by("stripe_sync_emulator")
    assert not loaded & {"stripe_sync_core", "stripe_sync_tui", "textual"}


def _core_imports() -> dict[str, set[str]]:
    """Each core module's imports of other core modules (relative or absolute), by module name."""
    import ast
    from pathlib import Path

    import stripe_sync_core

    root = Path(stripe_sync_core.__file__).parent
    imports: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    found.update([node.module] if node.module else [alias.name for alias in node.names])
                elif node.module and node.module.startswith("stripe_sync_core."):
                    found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("stripe_sync_core."))
        imports[path.stem] = found
    return imports


def test_no_part_of_the_core_reaches_back_into_the_facade():
    importers = sorted(module for module, found in _core_imports().items() if "sync" in found)
    # The package exports the facade; the blocking facade and the function handlers wrap it. No part
    # the facade uses does.
    assert importers == ["__init__", "blocking", "serverless"]


def test_the_core_import_graph_is_a_tree_without_cycles():
    graph = {module: {m.split(".")[0] for m in found} & set(_core_imports()) for module, found in _core_imports().items()}
    graph.pop("__init__", None)
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        assert module not in visiting, f"import cycle: {' -> '.join([*visiting, module])}"
        if module in done:
            return
        visiting.append(module)
        for imported in graph.get(module, ()):
            if imported != "__init__":
                visit(imported)
        visiting.pop()
        done.add(module)

    for module in graph:
        visit(module)


def test_console_screens_reach_the_engine_only_through_its_typed_bridge():
    """Screens call `ConsoleEngine`'s named methods; none holds the facade or passes it closures."""
    import ast
    from pathlib import Path

    import stripe_sync_tui

    offenders = []
    for path in sorted((Path(stripe_sync_tui.__file__).parent / "screens").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stripe_sync_core"):
                names = [(node.module, alias.name) for alias in node.names]
            offenders += [f"{path.name}: {module}.{name}" for module, name in names
                          if module == "stripe_sync_core.sync" or name == "StripeSync"]
    assert offenders == []
