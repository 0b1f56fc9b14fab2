"""2 · Webhooks: managed endpoints (create, delete) and, read-only, every other endpoint Stripe calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.content import Content
from textual.message import Message
from textual.widgets import Static

from stripe_sync_core.managed_webhooks import default_enabled_events

from .. import actions
from .. import format as fmt
from ..engine import WebhookView
from ..theme import styled
from ..widgets.table import FilterableTable
from .base import ConsoleScreen
from .dialogs import ConfirmDialog, CreateWebhookDialog

if TYPE_CHECKING:
    pass


# Ids whole (a webhook endpoint id is 27 characters; Stripe ids run to ~32); the URL takes what is left.
COLUMNS = [("id", "id", 32), ("url", "URL", 19), ("status", "status", 8), ("events", "events", 6),
           ("listens", "listens to", 13), ("created", "created (UTC)", 19), ("owner", "owner", 9)]


@dataclass
class WebhookCreated(Message):
    webhook_id: str
    url: str
    secret: str | None


@dataclass
class WebhookDeleted(Message):
    webhook_id: str


class WebhooksScreen(ConsoleScreen):
    screen_name = "webhooks"
    BINDINGS = actions.bindings_for("webhooks")
    refresh_every = None  # endpoints change by our hand: load on show, after each action and on r

    def __init__(self) -> None:
        super().__init__()
        self.view: WebhookView | None = None

    def compose_body(self) -> ComposeResult:
        yield Static(id="webhooks-title", classes="section-title")
        yield FilterableTable(COLUMNS, fill="url", id="webhooks", empty="no webhook endpoints: n creates a managed one")

    def on_mount(self) -> None:
        self.query_one(FilterableTable).focus_table()

    async def fetch(self) -> WebhookView:
        assert self.console.engine is not None
        return await self.console.engine.webhook_view()

    def show(self, view: WebhookView) -> None:
        self.view = view
        app = self.app
        listed = {e.webhook_id: e for e in view.endpoints}
        rows = []
        all_types = len(default_enabled_events())
        for hook in view.managed:
            endpoint = listed.get(hook.webhook_id)
            state = endpoint.status if endpoint else hook.status
            types = len(hook.enabled_events)
            rows.append((hook.webhook_id, (
                hook.webhook_id, fmt.clip(hook.url, 500), styled(app, state, fmt.meaning_of_status(state)),
                fmt.count(hook.event_count),
                "all supported" if types >= all_types or "*" in hook.enabled_events else f"{types} types",
                # A Connect endpoint: the connected accounts' events (its count is theirs).
                fmt.timestamp(hook.created_at), styled(app, "Connect" if hook.connect else "managed", "primary"),
            )))
        managed_ids = {hook.webhook_id for hook in view.managed}
        for endpoint in view.endpoints:
            if endpoint.webhook_id in managed_ids:
                continue
            types = len(endpoint.enabled_events)
            rows.append((endpoint.webhook_id, (
                endpoint.webhook_id, fmt.clip(endpoint.url, 500),
                styled(app, endpoint.status, fmt.meaning_of_status(endpoint.status)), "–",
                "every event" if "*" in endpoint.enabled_events else f"{types} types",
                fmt.timestamp(endpoint.created), styled(app, "read-only", "text-muted"),
            )))
        self.query_one(FilterableTable).set_rows(rows)
        others = len(rows) - len(view.managed)
        title = Content.assemble(
            (f"{len(view.managed)} managed", "bold"),
            f" ({connect} Connect)" if (connect := sum(hook.connect for hook in view.managed)) else "",
            f" · {others} not managed by us (read-only: delete those in the Stripe dashboard)",
        )
        if view.stripe_error:
            title = title + Content.styled(f" · Stripe list failed: {view.stripe_error}", "$error")
        self.query_one("#webhooks-title", Static).update(title)

    def selected(self) -> tuple[str, str, bool] | None:
        """(id, url, managed) of the row under the cursor."""
        key = self.query_one(FilterableTable).cursor_key
        if key is None or self.view is None:
            return None
        for hook in self.view.managed:
            if hook.webhook_id == key:
                return key, hook.url, True
        for endpoint in self.view.endpoints:
            if endpoint.webhook_id == key:
                return key, endpoint.url, False
        return None

    # -- create ---------------------------------------------------------------------------------

    def action_create_webhook(self) -> None:
        self.app.push_screen(CreateWebhookDialog(self.console.livemode), self._create)

    def _create(self, result: tuple[str, list[str] | None] | None) -> None:
        if result is None:
            return
        url, events = result
        engine = self.console.engine
        assert engine is not None

        async def create() -> WebhookCreated:
            hook = await engine.create_managed_webhook(url, events)
            return WebhookCreated(hook["id"], hook.get("url", url), getattr(hook, "signing_secret", None))

        self.call_engine("create webhook", create)

    def on_webhook_created(self, message: WebhookCreated) -> None:
        secret = f" · signing secret {fmt.mask_secret(message.secret)}" if message.secret else ""
        self.notify(f"Created {message.webhook_id} → {message.url}{secret}", title="Webhook created")
        self.action_refresh_now()

    # -- delete ---------------------------------------------------------------------------------

    def action_delete_webhook(self) -> None:
        selected = self.selected()
        if selected is None:
            self.notify("Select a webhook first.")
            return
        webhook_id, url, managed = selected
        if not managed:
            self.notify(f"{webhook_id} is not managed by stripe-sync: it is shown read-only; "
                        "delete it in the Stripe dashboard.", severity="warning")
            return
        dialog = ConfirmDialog("Delete this webhook endpoint?", f"{webhook_id}\n{url}", self.console.livemode,
                               confirm_label="Delete endpoint")
        self.app.push_screen(dialog, lambda confirmed: self._delete(webhook_id) if confirmed else None)

    def _delete(self, webhook_id: str) -> None:
        engine = self.console.engine
        assert engine is not None

        async def delete() -> WebhookDeleted:
            await engine.delete_managed_webhook(webhook_id)
            return WebhookDeleted(webhook_id)

        self.call_engine("delete webhook", delete)

    def on_webhook_deleted(self, message: WebhookDeleted) -> None:
        self.notify(f"Deleted {message.webhook_id}", title="Webhook deleted")
        self.action_refresh_now()
