"""The type table: every Stripe resource the emulator serves, with its id style, path, event
prefix, list filters and how it nests under a parent."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Embed:
    """An embedded list (``subscription.items``) rendered live from a child table."""

    child: str
    url: str  # format string with {id}
    limit: int = 10


@dataclass
class ResourceType:
    name: str  # our name, e.g. "customers"
    object: str  # Stripe's ``object`` value
    fixture: str  # template key in templates.json
    prefix: str  # id prefix, e.g. "cus_"
    id_style: str = "long"
    path: str | None = None  # collection path, e.g. "/v1/customers" (None: only reachable via a parent)
    event_prefix: str | None = None  # e.g. "customer.subscription"; None: Stripe emits no events for it
    kind: str = ""  # word used in "No such <kind>" messages
    has_created: bool = True  # whether the object shows a ``created`` field
    parent: str | None = None  # child-table relation: parent type name
    parent_field: str | None = None  # field in the child holding the parent id (if any)
    deletable: bool = False
    custom_ids: bool = False  # create accepts an ``id`` param
    filters: tuple[str, ...] = ()  # list params besides limit/cursors/created/expand
    embeds: dict[str, Embed] = field(default_factory=dict)  # live embedded lists
    hydrate: dict[str, str] = field(default_factory=dict)  # field -> type of an embedded object kept as id when stored
    counted: bool = True  # included in counts()/total objects
    livemode: bool = True  # whether Stripe sends ``livemode`` on it (refunds, balance transactions... do not)
    includable: tuple[str, ...] = ()  # fields Stripe sends only when expanded (kept when stored, never rendered)

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = self.object


def _r(*args, **kw) -> ResourceType:
    return ResourceType(*args, **kw)


RESOURCES: dict[str, ResourceType] = {
    r.name: r
    for r in [
        _r("customers", "customer", "customer", "cus_", "short", "/v1/customers", "customer",
           deletable=True, filters=("email", "test_clock")),
        _r("products", "product", "product", "prod_", "short", "/v1/products", "product",
           deletable=True, custom_ids=True, filters=("active", "ids", "shippable", "url", "type")),
        _r("prices", "price", "price", "price_", "long", "/v1/prices", "price",
           filters=("active", "currency", "product", "type", "lookup_keys", "recurring"),
           includable=("tiers", "currency_options")),
        _r("coupons", "coupon", "coupon", "", "coupon", "/v1/coupons", "coupon", deletable=True, custom_ids=True,
           includable=("currency_options",)),
        _r("promotion_codes", "promotion_code", "promotion_code", "promo_", "long", "/v1/promotion_codes",
           "promotion_code", filters=("active", "code", "coupon", "customer")),
        _r("tax_rates", "tax_rate", "tax_rate", "txr_", "long", "/v1/tax_rates", "tax_rate",
           filters=("active", "inclusive")),
        _r("features", "entitlements.feature", "entitlements.feature", "feat_test_", "feat",
           "/v1/entitlements/features", None, kind="feature", has_created=False,
           filters=("archived", "lookup_key")),
        _r("product_features", "product_feature", "product_feature", "prodft_", "long", None, None,
           kind="product feature", has_created=False, parent="products", deletable=True,
           hydrate={"entitlement_feature": "features"}),
        _r("payment_methods", "payment_method", "payment_method", "pm_", "long", "/v1/payment_methods",
           "payment_method", kind="PaymentMethod", filters=("customer", "type")),
        _r("tax_ids", "tax_id", "tax_id", "txi_", "long", "/v1/tax_ids", "customer.tax_id", deletable=True,
           filters=("owner", "customer")),
        _r("subscriptions", "subscription", "subscription", "sub_", "long", "/v1/subscriptions",
           "customer.subscription",
           filters=("customer", "price", "status", "collection_method", "test_clock", "automatic_tax",
                    "current_period_end", "current_period_start"),
           embeds={"items": Embed("subscription_items", "/v1/subscription_items?subscription={id}")}),
        _r("subscription_items", "subscription_item", "subscription_item", "si_", "short",
           "/v1/subscription_items", None, parent="subscriptions", parent_field="subscription",
           deletable=True, hydrate={"price": "prices", "plan": "plans"}, livemode=False),
        _r("subscription_schedules", "subscription_schedule", "subscription_schedule", "sub_sched_", "long",
           "/v1/subscription_schedules", "subscription_schedule",
           filters=("customer", "scheduled", "canceled_at", "completed_at", "released_at")),
        _r("invoices", "invoice", "invoice", "in_", "long", "/v1/invoices", "invoice", deletable=True,
           filters=("customer", "status", "subscription", "collection_method", "due_date"),
           embeds={"lines": Embed("invoice_lines", "/v1/invoices/{id}/lines")}),
        _r("invoice_lines", "line_item", "line_item", "il_", "long", None, None, kind="invoice line item",
           has_created=False, parent="invoices", parent_field="invoice"),
        _r("invoiceitems", "invoiceitem", "invoiceitem", "ii_", "long", "/v1/invoiceitems", "invoiceitem",
           deletable=True, filters=("customer", "invoice", "pending")),
        _r("credit_notes", "credit_note", "credit_note", "cn_", "long", "/v1/credit_notes", "credit_note",
           filters=("customer", "invoice"),
           embeds={"lines": Embed("credit_note_lines", "/v1/credit_notes/{id}/lines")}),
        _r("credit_note_lines", "credit_note_line_item", "credit_note_line_item", "cnli_", "long", None, None,
           kind="credit note line item", has_created=False, parent="credit_notes"),
        _r("charges", "charge", "charge", "ch_", "long", "/v1/charges", "charge",
           filters=("customer", "payment_intent", "transfer_group"),
           embeds={"refunds": Embed("refunds", "/v1/charges/{id}/refunds")}),
        _r("payment_intents", "payment_intent", "payment_intent", "pi_", "long", "/v1/payment_intents",
           "payment_intent", filters=("customer",)),
        _r("refunds", "refund", "refund", "re_", "long", "/v1/refunds", "refund", filters=("charge", "payment_intent"),
           livemode=False),
        _r("disputes", "dispute", "dispute", "dp_", "long", "/v1/disputes", "charge.dispute",
           filters=("charge", "payment_intent")),
        _r("early_fraud_warnings", "radar.early_fraud_warning", "radar.early_fraud_warning", "issfr_", "long",
           "/v1/radar/early_fraud_warnings", "radar.early_fraud_warning", kind="early fraud warning",
           filters=("charge", "payment_intent")),
        _r("reviews", "review", "review", "prv_", "long", "/v1/reviews", "review"),
        _r("setup_intents", "setup_intent", "setup_intent", "seti_", "long", "/v1/setup_intents", "setup_intent",
           kind="setupintent", filters=("customer", "payment_method", "attach_to_self")),
        _r("checkout_sessions", "checkout.session", "checkout.session", "cs_test_", "checkout",
           "/v1/checkout/sessions", "checkout.session", kind="checkout.session",
           filters=("customer", "customer_details", "payment_intent", "payment_link", "status", "subscription")),
        _r("checkout_line_items", "item", "item", "li_", "long", None, None, kind="line item",
           has_created=False, parent="checkout_sessions", hydrate={"price": "prices"}, livemode=False,
           includable=("discounts", "taxes")),
        _r("payouts", "payout", "payout", "po_", "long", "/v1/payouts", "payout",
           filters=("status", "arrival_date", "destination")),
        _r("transfers", "transfer", "transfer", "tr_", "long", "/v1/transfers", "transfer",
           filters=("destination", "transfer_group")),
        _r("balance_transactions", "balance_transaction", "balance_transaction", "txn_", "long",
           "/v1/balance_transactions", None, kind="balance transaction",
           filters=("payout", "source", "type", "currency"), livemode=False),
        # Dict-only types (no generated rows beyond what the generation adds explicitly).
        _r("accounts", "account", "account", "acct_", "long", "/v1/accounts", "account", deletable=True,
           counted=False),
        _r("events", "event", "event", "evt_", "long", "/v1/events", None, counted=False,
           filters=("type", "types", "delivery_success")),
        _r("webhook_endpoints", "webhook_endpoint", "webhook_endpoint", "we_", "long", "/v1/webhook_endpoints",
           None, deletable=True, counted=False),
    ]
}

# Plans are a view over recurring prices (Stripe shares ids between the two), and active
# entitlements are derived from subscriptions; neither has a table of its own.
VIEW_TYPES = ("plans", "active_entitlements")
ALL_TYPES = tuple(n for n, r in RESOURCES.items() if r.counted) + VIEW_TYPES

# Longest prefix first so "sub_sched_" wins over "sub_".
PREFIXES: list[tuple[str, str]] = sorted(
    ((r.prefix, r.name) for r in RESOURCES.values() if r.prefix),
    key=lambda p: -len(p[0]),
)


def type_for_id(ident: str) -> str | None:
    """Our type name for an id by its prefix (coupons have none: None is returned)."""
    for prefix, name in PREFIXES:
        if ident.startswith(prefix):
            return name
    return None
