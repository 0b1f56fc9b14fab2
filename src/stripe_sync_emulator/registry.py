"""Where the resource families register what they can do, so no table here is kept by hand.

Each module in ``families/`` decorates its functions: ``@renders("customers")`` for the function
that turns a generated row into an object, ``@creates`` / ``@updates`` / ``@deletes`` /
``@action`` for the operations behind the API routes, ``@generation_step(order)`` for its part of
the data generation, and calls ``list_filters`` for the list parameters it understands. The API,
the control API and the account store read the tables below; importing ``families`` fills them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from .account import AccountStore
    from .core import Ctx
    from .filters import FilterBuilder
    from .generation import GenerationContext

Renderer = Callable[["AccountStore", int, bool], dict[str, Any]]
CreateOperation = Callable[["Ctx", dict[str, Any]], dict[str, Any]]
RowOperation = Callable[["Ctx", int, dict[str, Any]], dict[str, Any]]
GenerationStep = Callable[["GenerationContext"], None]

RENDERERS: dict[str, Renderer] = {}
CREATE: dict[str, CreateOperation] = {}
CONTROL_ONLY_CREATE: set[str] = set()  # creatable through the control API only (Stripe has no endpoint)
UPDATE: dict[str, RowOperation] = {}
DELETE: dict[str, RowOperation] = {}
ACTIONS: dict[tuple[str, str], RowOperation] = {}  # (type, verb): POST <path>/{id}/<verb>
CONTROL_ACTIONS: dict[tuple[str, str], RowOperation] = {}  # actions the control API offers on top
FILTERS: dict[str, dict[str, FilterBuilder]] = {}
DEFAULT_FILTERS: dict[str, tuple[str, ...]] = {}  # list params applied with ``None`` when not given
_STEPS: dict[int, GenerationStep] = {}

F = TypeVar("F", bound=Callable[..., Any])


def _register(table: dict[Any, Any], key: Any, what: str) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        if key in table:
            raise RuntimeError(f"{what} {key!r} registered twice ({table[key].__module__}, {fn.__module__})")
        table[key] = fn
        return fn

    return decorate


def renders(type_name: str) -> Callable[[F], F]:
    """The renderer of a generated row of ``type_name``: ``(account, row, livemode) -> object``."""
    return _register(RENDERERS, type_name, "renderer")


def creates(type_name: str, *, control_only: bool = False) -> Callable[[F], F]:
    """``POST <path>`` of ``type_name``: ``(ctx, params) -> object``."""
    if control_only:
        CONTROL_ONLY_CREATE.add(type_name)
    return _register(CREATE, type_name, "create")


def updates(type_name: str) -> Callable[[F], F]:
    """``POST <path>/{id}``: ``(ctx, seq, params) -> object``."""
    return _register(UPDATE, type_name, "update")


def deletes(type_name: str) -> Callable[[F], F]:
    """``DELETE <path>/{id}``: ``(ctx, seq, params) -> object``."""
    return _register(DELETE, type_name, "delete")


def action(type_name: str, verb: str, *, control_only: bool = False) -> Callable[[F], F]:
    """``POST <path>/{id}/<verb>`` (or, with ``control_only``, only the control API's action)."""
    return _register(CONTROL_ACTIONS if control_only else ACTIONS, (type_name, verb), "action")


def list_filters(type_name: str, builders: dict[str, FilterBuilder], *, defaults: tuple[str, ...] = ()) -> None:
    """The list parameters ``type_name`` accepts besides limit/cursors/created/expand."""
    if type_name in FILTERS:
        raise RuntimeError(f"list filters of {type_name!r} registered twice")
    FILTERS[type_name] = dict(builders)
    if defaults:
        DEFAULT_FILTERS[type_name] = defaults


def generation_step(order: int) -> Callable[[F], F]:
    """A part of the data generation. Steps run by ``order`` and share one random stream, so a
    step's place fixes which numbers it draws: a new step goes after all others, or every seed's
    data would change."""
    return _register(_STEPS, order, "generation step")


def generation_steps() -> list[GenerationStep]:
    return [_STEPS[order] for order in sorted(_STEPS)]
