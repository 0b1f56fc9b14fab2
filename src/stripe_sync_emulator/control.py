"""Operations behind the control API (``/_emulator/...``) and the Python methods of
``StripeEmulator``: faults, clock, stats, ground truth, random mutations, control-only creates."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import registry
from .account import AccountStore
from .core import Ctx, EmulatorCore
from .errors import StripeError, invalid
from .faults import RateLimitConfig
from .mutations import Mutator
from .resources import ALL_TYPES, RESOURCES

FAULT_KEYS = ("error_rate", "latency_ms", "webhook_drop_rate", "webhook_duplicate_rate", "webhook_reorder_rate",
              "burst_events")


class Control:
    def __init__(self, core: EmulatorCore) -> None:
        self.core = core

    def account(self, account: str | None) -> AccountStore:
        if not account:
            return self.core.platform
        store = self.core.accounts.get(account)
        if store is None:
            raise invalid(f"No such account: '{account}'", param="account")
        return store

    # ---- faults ------------------------------------------------------------------------------
    def faults(self) -> dict[str, Any]:
        out = self.core.faults.as_dict()
        out["rate_limit"] = self.core.limiter.config.describe()
        return out

    def set_faults(self, **kw: Any) -> dict[str, Any]:
        f = self.core.faults
        for k, v in kw.items():
            if v is None:
                continue
            if k == "rate_limit":
                self.core.limiter.reset(RateLimitConfig.parse(v))
            elif k in FAULT_KEYS:
                if k == "burst_events":
                    f.burst_events = int(v)
                    f.burst_second = None
                else:
                    val = float(v)
                    if k != "latency_ms" and not 0.0 <= val <= 1.0:
                        raise invalid(f"{k} must be between 0 and 1", param=k)
                    setattr(f, k, val)
            else:
                raise invalid(f"Unknown fault: {k}", param=k)
        return self.faults()

    # ---- Sigma ----------------------------------------------------------------------------------
    def sigma(self, **kw: Any) -> dict[str, Any]:
        """Sigma's knobs (see ``sigma.SigmaSettings``); with arguments, changes them first."""
        with self.core.lock:
            return self.core.sigma.configure(**kw)

    def sigma_rows(self, table: str, account: str | None = None) -> list[dict[str, str | None]]:
        """A reporting table's rows as a result file carries them (ground truth for tests)."""
        store = self.account(account)
        with self.core.lock:
            return self.core.sigma.rows(store, table)

    def sigma_count(self, table: str, account: str | None = None) -> int:
        store = self.account(account)
        with self.core.lock:
            return self.core.sigma.count(store, table)

    # ---- clock ---------------------------------------------------------------------------------
    def clock(self, *, freeze: Any = None, at: float | None = None, advance: float | None = None,
              unfreeze: Any = None, reset: Any = None) -> dict[str, Any]:
        c = self.core.clock
        if reset:
            c.reset()
        if freeze or at is not None:
            c.freeze(at)
        if advance:
            c.advance(float(advance))
        if unfreeze:
            c.unfreeze()
        return {"now": c.now(), "frozen": c.frozen}

    # ---- ground truth ----------------------------------------------------------------------------
    def counts(self, account: str | None = None) -> dict[str, int]:
        store = self.account(account)
        with self.core.lock:
            return {name: store.count(name) for name in ALL_TYPES}

    def objects(self, type_name: str, account: str | None = None, livemode: bool = False) -> list[dict[str, Any]]:
        """Every live object of a type, fully rendered, newest first (deleted ones excluded)."""
        store = self.account(account)
        with self.core.lock:
            if type_name == "plans":
                return [p for p in (store.render_plan(s, livemode) for s in
                                    store.all_seqs("prices", [store.build_filter("prices", "type", "recurring")])) if p]
            if type_name == "active_entitlements":
                return [store.render_entitlement(c, f, livemode) for c in store.all_seqs("customers")
                        for f in store.entitlement_features(c)]
            if type_name not in RESOURCES:
                raise invalid(f"Unknown type: {type_name}; known: {', '.join(ALL_TYPES)}", param="type")
            return [o for o in (store.render(type_name, s, livemode) for s in store.all_seqs(type_name))
                    if o is not None and not o.get("deleted")]

    def get(self, type_name: str, ident: str, account: str | None = None) -> dict[str, Any] | None:
        store = self.account(account)
        with self.core.lock:
            seq = store.tables[type_name].seq_of(ident)
            return None if seq is None else store.render(type_name, seq, False)

    # ---- writes ------------------------------------------------------------------------------------
    def mutate_random(self, n: int, account: str | None = None, burst: bool = False,
                      livemode: bool = False) -> list[dict[str, Any]]:
        store = self.account(account)
        core = self.core
        with core.lock:
            if burst:
                core.faults.burst_events = 10**9
                core.faults.burst_second = None
            try:
                return Mutator(core, store, core.mutation_rng, livemode).run(int(n))
            finally:
                if burst:
                    core.faults.burst_events = 0
                    core.faults.burst_second = None

    @contextmanager
    def _events(self, silent: bool) -> Iterator[None]:
        """`silent`: the change records and delivers no event (held with the core's lock)."""
        if not silent:
            yield
            return
        self.core.events_muted += 1
        try:
            yield
        finally:
            self.core.events_muted -= 1

    def create(self, type_name: str, params: dict[str, Any], account: str | None = None,
               livemode: bool = False, *, silent: bool = False) -> dict[str, Any]:
        """Create through the same operation as the API (also disputes, fraud warnings, reviews).
        `silent`: without any event (an object the account's event stream never mentions)."""
        fn = registry.CREATE.get(type_name)
        if fn is None:
            raise invalid(f"Objects of type {type_name} cannot be created", param="type")
        with self.core.lock, self._events(silent):
            return fn(Ctx(self.core, self.account(account), livemode), params)

    def action(self, type_name: str, ident: str, action: str, params: dict[str, Any],
               account: str | None = None, livemode: bool = False, *, silent: bool = False) -> dict[str, Any]:
        """An action (`update` and `delete` too) on one object; `silent`: without any event."""
        fn = registry.CONTROL_ACTIONS.get((type_name, action)) or registry.ACTIONS.get((type_name, action))
        if fn is None:
            if action == "update" and type_name in registry.UPDATE:
                fn = registry.UPDATE[type_name]
            elif action == "delete" and type_name in registry.DELETE:
                fn = registry.DELETE[type_name]
            else:
                raise invalid(f"Unknown action {action} for {type_name}", param="action")
        store = self.account(account)
        with self.core.lock, self._events(silent):
            seq = store.live_seq_or_404(type_name, ident)
            return fn(Ctx(self.core, store, livemode), seq, params)

    def info(self, api_base: str | None = None, secret_key: str | None = None) -> dict[str, Any]:
        core = self.core
        return {"api_base": api_base, "secret_key": secret_key, "account_id": core.platform_id,
                "connected_accounts": [a for a in core.accounts if a != core.platform_id],
                "seed": core.config.seed, "start": core.start, "end": core.end, "sizes": core.platform.sizes,
                "build_seconds": round(core.build_seconds, 3), "api_version": core.config.api_version,
                "faults": self.faults(), "now": core.clock.now(), "bursts": core.platform.extra.get("bursts"),
                "gap": core.platform.extra.get("gap"), "sigma": core.sigma.settings.as_dict()}


def control_error(exc: Exception) -> StripeError:
    return exc if isinstance(exc, StripeError) else StripeError(400, str(exc))
