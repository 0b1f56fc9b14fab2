"""Stripe-shaped API errors."""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """Raised anywhere in request handling; rendered as ``{"error": {...}}`` with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        err: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            err["param"] = self.param
        if request_id:
            err["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        err.update(self.extra)
        return {"error": err}


def missing(kind: str, ident: str, param: str = "id") -> StripeError:
    """404 resource_missing, as Stripe words it (``No such customer: 'cus_x'``)."""
    return StripeError(404, f"No such {kind}: '{ident}'", code="resource_missing", param=param)


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    return StripeError(400, message, param=param, code=code)


def unknown_param(name: str) -> StripeError:
    return StripeError(
        400,
        f"Received unknown parameter: {name}",
        code="parameter_unknown",
        param=name,
    )


def missing_param(name: str) -> StripeError:
    return StripeError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)
