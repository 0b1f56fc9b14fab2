"""The emulator's state independent of HTTP: accounts, events, faults, stats, and the request
context that operations run in."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .account import AccountStore
from .clock import Clock
from .errors import StripeError
from .events import RETENTION_SECONDS, build_event, endpoint_wants
from .faults import Faults, RateLimitConfig, RateLimiter, Stats
from .files import Files
from .ids import b62_hash, stable_hash
from .templates import make
from .versions import DEFAULT_API_VERSION, check_modelled, render_at

if TYPE_CHECKING:  # pragma: no cover
    from .delivery import Deliverer
    from .sigma.service import Sigma

DAY = 86400


@dataclass
class EmulatorConfig:
    seed: int = 0
    customers: int = 100
    start: int | None = None  # epoch; default: end - 365 days
    end: int | None = None  # epoch; default: today 00:00 UTC (so a day's runs are identical)
    sizes: dict[str, int] | None = None
    connected_accounts: int = 0
    connected_customers: int | None = None  # per connected account; default max(2, customers // 20)
    api_version: str = DEFAULT_API_VERSION
    webhook_retry_base_delay: float = 1.0
    webhook_retry_max_delay: float = 60.0
    webhook_max_attempts: int = 5
    webhook_timeout: float = 10.0
    webhook_reorder_delay: float = 0.25
    idempotency_ttl: int = DAY
    idempotency_max_keys: int = 50_000
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_range(self) -> tuple[int, int]:
        end = self.end if self.end is not None else (int(time.time()) // DAY) * DAY
        start = self.start if self.start is not None else end - 365 * DAY
        return int(start), int(end)


def account_id_for(seed: int, k: int) -> str:
    """``acct_1`` + 15 base62 characters, derived from the seed (k=0: the platform)."""
    return "acct_1" + b62_hash(stable_hash("acct", seed, k), 15)


class EmulatorCore:
    """Accounts and cross-cutting machinery; all methods run on one thread at a time."""

    def __init__(self, config: EmulatorConfig, clock: Clock | None = None, *, rate_limit: Any = None,
                 error_rate: float = 0.0, latency_ms: float = 0.0, webhook_drop_rate: float = 0.0,
                 webhook_duplicate_rate: float = 0.0, webhook_reorder_rate: float = 0.0,
                 rate_limit_clock: Callable[[], float] = time.monotonic) -> None:
        check_modelled(config.api_version)
        self.config = config
        self.clock = clock or Clock()
        self.lock = threading.RLock()
        self.accepted_keys: frozenset[str] | None = None
        """None: every well-formed key; else only these (any other is answered 401, as Stripe does)."""
        start, end = config.resolved_range()
        self.start, self.end = start, end
        seed = config.seed
        self.platform_id = account_id_for(seed, 0)
        connected_ids = [account_id_for(seed, k + 1) for k in range(config.connected_accounts)]
        t0 = time.perf_counter()
        self.platform = AccountStore(seed=seed, account_id=self.platform_id, customers=config.customers,
                                     start=start, end=end, sizes=config.sizes,
                                     transfer_destinations=connected_ids)
        self.platform.account_obj = self._account_object(self.platform_id, start, "standard", 0)
        self.accounts: dict[str, AccountStore] = {self.platform_id: self.platform}
        per = config.connected_customers if config.connected_customers is not None else max(2, config.customers // 20)
        for k, acct_id in enumerate(connected_ids):
            account = AccountStore(seed=seed, account_id=acct_id, customers=per, start=start, end=end,
                               platform_id=self.platform_id)
            self._register_connected(account, start + (k + 1) * DAY if end - start > 30 * DAY else start, k + 1)
        for account in self.accounts.values():
            account.api_version = config.api_version
        self.build_seconds = time.perf_counter() - t0
        self.faults = Faults(error_rate=error_rate, latency_ms=latency_ms, webhook_drop_rate=webhook_drop_rate,
                             webhook_duplicate_rate=webhook_duplicate_rate, webhook_reorder_rate=webhook_reorder_rate,
                             rng=random.Random(stable_hash("faults", seed)),
                             webhook_rng=random.Random(stable_hash("webhooks", seed)))
        self.limiter = RateLimiter(RateLimitConfig.parse(rate_limit), rate_limit_clock)
        self.stats = Stats()
        self.deliverer: Deliverer | None = None
        self.mutation_rng = random.Random(stable_hash("mutations", seed))
        self._events_since_prune = 0
        self.events_muted = 0
        """Above 0 while a control-API change runs `silent`: it records no event and delivers none (the
        drift Stripe itself causes, or a lost event, for `verify` tests)."""
        self.files = Files()
        self._sigma: Sigma | None = None

    @property
    def sigma(self) -> Sigma:
        """Sigma's query runs and reporting tables (loaded on first use: most runs never query Sigma)."""
        if self._sigma is None:
            from .sigma.service import Sigma

            self._sigma = Sigma(self)
        return self._sigma

    # ---- accounts -------------------------------------------------------------------------------
    def _account_object(self, acct_id: str, created: int, typ: str, k: int) -> dict[str, Any]:
        o = make("account")
        o.update({"id": acct_id, "created": created, "type": typ, "charges_enabled": True, "payouts_enabled": True,
                  "details_submitted": True, "email": f"owner{k}@example.com", "metadata": {}})
        o["business_profile"]["name"] = "Emulated Platform" if k == 0 else f"Connected Shop {k}"
        o["settings"]["dashboard"]["display_name"] = o["business_profile"]["name"]
        o["external_accounts"]["url"] = f"/v1/accounts/{acct_id}/external_accounts"
        o["requirements"].update({"currently_due": [], "eventually_due": [], "disabled_reason": None})
        if k:
            o["controller"] = {"type": "application", "is_controller": True}
        return o

    def _register_connected(self, account: AccountStore, created: int, k: int) -> None:
        obj = self._account_object(account.id, created, "express" if k % 2 else "custom", k)
        account.account_obj = obj
        t = self.platform.tables["accounts"]
        seq = t.new_seq(created, account.id)
        t.put(seq, obj)
        self.accounts[account.id] = account

    def add_connected_account(self, created: int, params: dict[str, Any]) -> AccountStore:
        k = len(self.accounts)
        acct_id = account_id_for(self.config.seed, 10_000 + k)
        account = AccountStore(seed=self.config.seed, account_id=acct_id, customers=0, start=self.start,
                           end=self.end, platform_id=self.platform_id)
        self._register_connected(account, created, k)
        account.api_version = self.config.api_version
        return account

    def store_for(self, stripe_account: str | None, key: str) -> AccountStore:
        if not stripe_account or stripe_account == self.platform_id:
            return self.platform
        account = self.accounts.get(stripe_account)
        if account is None:
            masked = key[:8] + "*" * 4 + key[-4:] if len(key) > 12 else key
            raise StripeError(403, f"The provided key '{masked}' does not have access to account '{stripe_account}' "
                              "(or that account does not exist). Application access may have been revoked.",
                              code="account_invalid")
        return account

    # ---- events -----------------------------------------------------------------------------------
    def now(self) -> int:
        return self.clock.time()

    def record_event(self, account: AccountStore, typ: str, obj: dict[str, Any], previous: dict[str, Any] | None, *,
                     livemode: bool, request_id: str | None, idempotency_key: str | None) -> dict[str, Any]:
        if self.events_muted:  # a silent change: the event never happened
            return {"id": None, "object": "event", "type": typ, "data": {"object": obj}}
        faults = self.faults
        created = self.now()
        if faults.burst_events > 0:
            if faults.burst_second is None:
                faults.burst_second = created
            created = faults.burst_second
            faults.burst_events -= 1
            if faults.burst_events == 0:
                faults.burst_second = None
        targets = self.endpoints_for(account, typ)
        t = account.tables["events"]
        seq = t.new_seq(created)
        obj = render_at(account, obj, self.config.api_version, livemode)
        ev = build_event(account, seq, typ, obj, previous, created=created, livemode=livemode,
                         api_version=self.config.api_version, request_id=request_id,
                         idempotency_key=idempotency_key, pending_webhooks=len(targets))
        t.put(seq, ev)
        self.stats.events_created += 1
        self._events_since_prune += 1
        if self._events_since_prune >= 5000:
            self._events_since_prune = 0
            self.prune_events()
        if targets and self.deliverer is not None:
            payload = json.dumps(ev, indent=2)
            for store, ep_seq in targets:
                self.deliverer.enqueue(store, ep_seq, ev, payload)
        return ev

    def endpoints_for(self, account: AccountStore, typ: str) -> list[tuple[AccountStore, int]]:
        """Enabled endpoints subscribed to ``typ``: the account's own (non-Connect) ones, plus the
        platform's Connect endpoints for events of connected accounts."""
        out: list[tuple[AccountStore, int]] = []
        for seq, ep in account.tables["webhook_endpoints"].rows.items():
            if not account.webhook_connect.get(seq) and endpoint_wants(ep, typ):
                out.append((account, seq))
        if account.platform_id is not None:
            plat = self.platform
            for seq, ep in plat.tables["webhook_endpoints"].rows.items():
                if plat.webhook_connect.get(seq) and endpoint_wants(ep, typ):
                    out.append((plat, seq))
        return out

    def prune_events(self) -> None:
        """Forget events past the retention window (they are already invisible to the API)."""
        cutoff = self.now() - RETENTION_SECONDS - DAY
        for account in self.accounts.values():
            t = account.tables["events"]
            old = [k for k in t.keys if k[0] < cutoff]
            for _, seq in old:
                t.delete(seq)
                t.deleted.discard(seq)  # forgotten, not "deleted": retrieve answers 404

    def retention_floor(self) -> int:
        return self.now() - RETENTION_SECONDS


class Ctx:
    """What an operation needs: the core, the account, the mode and the request ids."""

    __slots__ = ("core", "account", "livemode", "request_id", "idempotency_key", "events", "api_version")

    def __init__(self, core: EmulatorCore, account: AccountStore, livemode: bool = False,
                 request_id: str | None = None, idempotency_key: str | None = None,
                 api_version: str | None = None) -> None:
        self.core = core
        self.api_version = api_version or core.config.api_version  # what the request's answer is rendered at
        self.account = account
        self.livemode = livemode
        self.request_id = request_id
        self.idempotency_key = idempotency_key
        self.events: list[dict[str, Any]] = []

    def now(self) -> int:
        return self.core.clock.time()

    def for_account(self, account: AccountStore) -> Ctx:
        """The same request acting on another account (its events belong to that account)."""
        return Ctx(self.core, account, self.livemode, self.request_id, self.idempotency_key, self.api_version)

    def emit(self, typ: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
        ev = self.core.record_event(self.account, typ, obj, previous, livemode=self.livemode,
                                    request_id=self.request_id, idempotency_key=self.idempotency_key)
        self.events.append(ev)
        return ev

    def render(self, name: str, seq: int) -> dict[str, Any]:
        obj = self.account.render(name, seq, self.livemode)
        assert obj is not None
        return obj
