"""The emulated resources, one module per family of Stripe objects that belong together.

Each module holds everything about its types: the list filters, the generation step that
produces their rows, the renderers that turn a row into a Stripe object, and the operations
(create, update, delete, actions) with the events Stripe sends for them. Everything registers
itself through the decorators in ``registry``; importing this package registers all families.

How to add a resource:

1. Describe it in ``resources.RESOURCES`` (object name, id prefix, path, event prefix, parent).
2. In the family module it belongs to (or a new one, imported below): ``list_filters(...)`` for
   its list parameters, a ``@renders`` function if rows are generated, ``@creates`` /
   ``@updates`` / ``@deletes`` / ``@action`` operations (built from ``operations.insert`` /
   ``modify`` / ``remove``, which emit the events), and, for generated rows, a
   ``@generation_step(order)`` with an order after every existing step (steps share one random
   stream: a step placed earlier changes every seed's data).
3. Add its size to ``generation.RATIOS`` or ``CATALOG`` if it is generated.

The HTTP routes, the control API and ``mutate_random`` pick it up from the registry.
"""

from . import (  # noqa: F401  (imported to register)
    adjustments,
    balance,
    catalog,
    checkout,
    connect,
    credit_notes,
    customers,
    disputes,
    history,
    invoice_items,
    invoices,
    payments,
    subscription_schedules,
    subscriptions,
    webhooks,
)
