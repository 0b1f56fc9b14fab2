"""aiohttp application: authentication, account selection, faults, idempotency, the ``/v1``
dispatch and the control API under ``/_emulator``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import time
from typing import Any

from aiohttp import web

from . import files_api as _files_api  # noqa: F401  (registers the /v1/files routes)
from .api import dispatch, route_template
from .control import Control, control_error
from .core import Ctx, EmulatorCore
from .errors import StripeError
from .faults import retry_after_header
from .files import RawBody
from .forms import flatten, parse_qs
from .sigma import routes as _sigma_routes  # noqa: F401  (registers /v1/sigma/query_runs)
from .versions import requested_version

KEY_RE = re.compile(r"^(sk|rk)_(test|live)_[0-9A-Za-z_]+$")
CORE_KEY: web.AppKey[EmulatorCore] = web.AppKey("core", EmulatorCore)
CONTROL_KEY: web.AppKey[Control] = web.AppKey("control", Control)
INFO_KEY: web.AppKey[dict[str, Any]] = web.AppKey("info", dict)


def _request_id() -> str:
    return "req_" + secrets.token_urlsafe(10).replace("-", "a").replace("_", "b")[:14]


def _mask(key: str) -> str:
    return key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else key


def authenticate(auth: str | None) -> tuple[str, bool]:
    """(key, livemode) from a Bearer or Basic Authorization header, else a Stripe-shaped 401."""
    if not auth:
        raise StripeError(401, "You did not provide an API key. You need to provide your API key in the "
                          "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). "
                          "See https://stripe.com/docs/api#authentication for details, or we can help at "
                          "https://support.stripe.com/.")
    scheme, _, value = auth.strip().partition(" ")
    key = ""
    if scheme.lower() == "bearer":
        key = value.strip()
    elif scheme.lower() == "basic":
        try:
            key = base64.b64decode(value.strip()).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            key = ""
    else:
        raise StripeError(401, "Invalid API Key provided: " + _mask(auth.strip()))
    m = KEY_RE.match(key)
    if not m:
        raise StripeError(401, f"Invalid API Key provided: {_mask(key)}")
    return key, m.group(2) == "live"


try:  # optional: several times faster on big pages; the emulator does not depend on it
    import orjson

    def _json(body: Any) -> bytes:
        return orjson.dumps(body)
except ImportError:  # pragma: no cover - depends on the environment
    _ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False, ensure_ascii=False)

    def _json(body: Any) -> bytes:
        return _ENCODER.encode(body).encode()


def _params_digest(method: str, path: str, params: dict[str, Any]) -> str:
    canon = method + " " + path + "?" + "&".join(f"{k}={v}" for k, v in sorted(flatten(params)))
    return hashlib.sha256(canon.encode()).hexdigest()


async def api_handler(request: web.Request) -> web.Response:
    core = request.app[CORE_KEY]
    rid = _request_id()
    method = request.method
    path = request.path.rstrip("/") or "/"
    route = route_template(method, path)
    headers = {"Request-Id": rid, "Stripe-Version": core.config.api_version,
               "Access-Control-Allow-Origin": "*", "Cache-Control": "no-cache, no-store"}
    status = 200
    acc: Any = None
    cache_key: str | None = None
    digest: str | None = None
    try:
        key, livemode = authenticate(request.headers.get("Authorization"))
        version = requested_version(request.headers.get("Stripe-Version"), core.config.api_version)
        headers["Stripe-Version"] = version
        if core.accepted_keys is not None and key not in core.accepted_keys:
            raise StripeError(401, f"Invalid API Key provided: {_mask(key)}")
        acc = core.store_for(request.headers.get("Stripe-Account"), key)
        if request.headers.get("Stripe-Account"):
            headers["Stripe-Account"] = acc.id
        # Stripe limits an account: a request under `Stripe-Account` counts against that account's limit.
        limited = core.limiter.check(acc.id, livemode, route)
        if limited is not None:
            reason, wait = limited
            raise StripeError(429, "Request rate limit exceeded. You can learn more about rate limits here "
                              "https://stripe.com/docs/rate-limits.", code="rate_limit",
                              headers={"Stripe-Should-Retry": "true", "Retry-After": retry_after_header(wait),
                                       "Stripe-Rate-Limited-Reason": reason})
        if core.faults.latency_ms > 0:
            await asyncio.sleep(core.faults.latency_ms / 1000.0)
        if core.faults.should_fail():
            core.stats.injected_errors += 1
            raise StripeError(500, "An unknown error occurred", type="api_error",
                              headers={"Stripe-Should-Retry": "true"})
        params = parse_qs(request.query_string) if request.query_string else {}
        if method in ("POST", "DELETE") and request.can_read_body:
            body_text = await request.text()
            if body_text:
                params.update(parse_qs(body_text))
        idem = request.headers.get("Idempotency-Key")
        if method == "POST" and idem:
            cache_key = f"{livemode}:{idem}"
            digest = _params_digest(method, path, params)
            hit = acc.idempotency.get(cache_key)
            if hit is not None and time.time() - hit["at"] > core.config.idempotency_ttl:
                del acc.idempotency[cache_key]
                hit = None
            if hit is not None:
                if hit["digest"] != digest:
                    raise StripeError(400, "Keys for idempotent requests can only be used with the same parameters "
                                      f"they were first used with. Try using a key other than '{idem}' if you "
                                      "meant to execute a different request.", type="idempotency_error")
                headers.update({"Idempotent-Replayed": "true", "Original-Request": hit["request_id"],
                                "Idempotency-Key": idem})
                core.stats.request(route, path, hit["status"])
                return web.Response(body=hit["body"], status=hit["status"], headers=headers,
                                    content_type="application/json")
        ctx = Ctx(core, acc, livemode, rid, idem, version)
        status, body = dispatch(ctx, method, path, params)
        if isinstance(body, RawBody):  # file contents: bytes as they are
            core.stats.request(route, path, status)
            headers["Content-Disposition"] = f'attachment; filename="{body.filename or "file"}"'
            return web.Response(body=body.data, status=status, headers=headers, content_type=body.content_type,
                                charset="utf-8" if body.content_type.startswith("text/") else None)
        payload = _json(body)
        if cache_key is not None:
            headers["Idempotency-Key"] = idem or ""
            _remember(core, acc, cache_key, digest or "", status, payload, rid)
    except StripeError as exc:
        status = exc.status
        payload = _json(exc.body(rid))
        headers.update(exc.headers)
        if status == 402 and cache_key is not None:  # card errors are results too: replay them
            _remember(core, acc, cache_key, digest or "", status, payload, rid)
    except Exception as exc:  # a bug: answer like Stripe's 500 rather than dropping the connection
        status = 500
        payload = _json({"error": {"type": "api_error", "message": f"Emulator error: {type(exc).__name__}: {exc}"}})
    core.stats.request(route, path, status)
    return web.Response(body=payload, status=status, headers=headers, content_type="application/json")


def _remember(core: EmulatorCore, acc: Any, key: str, digest: str, status: int, payload: bytes, rid: str) -> None:
    cache = acc.idempotency
    cache[key] = {"digest": digest, "status": status, "body": payload, "request_id": rid, "at": time.time()}
    while len(cache) > core.config.idempotency_max_keys:
        cache.popitem(last=False)


# ---- control API -------------------------------------------------------------------------------------

async def _control_params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = parse_qs(request.query_string) if request.query_string else {}
    if request.can_read_body:
        text = await request.text()
        if text.strip():
            if text.lstrip().startswith("{") or request.content_type == "application/json":
                data = json.loads(text)
                if isinstance(data, dict):
                    params.update(data)
            else:
                params.update(parse_qs(text))
    return params


def _num(v: Any) -> float | None:
    return None if v in (None, "") else float(v)


async def control_handler(request: web.Request) -> web.Response:
    core = request.app[CORE_KEY]
    ctl = request.app[CONTROL_KEY]
    info = request.app[INFO_KEY]
    parts = [p for p in request.match_info.get("tail", "").split("/") if p]
    method = request.method
    try:
        p = await _control_params(request)
        account = p.pop("account", None)
        silent = p.pop("silent", None) in (True, "true", "1")
        body: Any
        if parts == ["info"]:
            body = ctl.info(info.get("api_base"), info.get("secret_key"))
        elif parts == ["stats"]:
            body = core.stats.snapshot()
        elif parts == ["stats", "reset"] and method == "POST":
            core.stats.reset()
            body = core.stats.snapshot()
        elif parts == ["faults"]:
            body = ctl.set_faults(**p) if method == "POST" else ctl.faults()
        elif parts == ["sigma"]:
            body = ctl.sigma(**p) if method == "POST" else ctl.sigma()
        elif parts == ["clock"]:
            if method == "POST":
                body = ctl.clock(freeze=p.get("freeze") in (True, "true", "1"), at=_num(p.get("at")),
                                 advance=_num(p.get("advance")), unfreeze=p.get("unfreeze") in (True, "true", "1"),
                                 reset=p.get("reset") in (True, "true", "1"))
            else:
                body = ctl.clock()
        elif parts == ["mutate"] and method == "POST":
            events = ctl.mutate_random(int(p.get("n", 1)), account, p.get("burst") in (True, "true", "1"))
            body = {"events": [e["id"] for e in events], "types": [e["type"] for e in events]}
        elif parts == ["counts"]:
            body = ctl.counts(account)
        elif len(parts) == 2 and parts[0] == "objects" and method == "GET":
            objs = ctl.objects(parts[1], account)
            limit = int(p.get("limit", len(objs) or 1))
            body = {"object": "list", "data": objs[:limit], "count": len(objs)}
        elif len(parts) == 2 and parts[0] == "objects" and method == "POST":
            body = ctl.create(parts[1], p, account, silent=silent)
        elif len(parts) == 4 and parts[0] == "objects" and method == "POST":
            body = ctl.action(parts[1], parts[2], parts[3], p, account, silent=silent)
        elif parts == ["deliveries"]:
            d = core.deliverer
            body = {"pending": d.pending if d else 0, "log": list(d.log)[-int(p.get("limit", 200)):] if d else []}
        elif parts == ["deliveries", "wait"] and method == "POST":
            d = core.deliverer
            ok = await d.wait_idle(float(p.get("timeout", 10))) if d else True
            body = {"idle": ok}
        else:
            raise StripeError(404, f"Unknown control endpoint: {method} /_emulator/{'/'.join(parts)}")
        return web.Response(body=_json(body), content_type="application/json")
    except Exception as exc:
        err = control_error(exc)
        return web.Response(body=_json(err.body()), status=err.status, content_type="application/json")


async def fallback_handler(request: web.Request) -> web.Response:
    err = StripeError(404, f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                      "https://stripe.com/docs or we can help at https://support.stripe.com/.")
    return web.Response(body=_json(err.body()), status=404, content_type="application/json",
                        headers={"Request-Id": _request_id()})


def build_app(core: EmulatorCore, info: dict[str, Any] | None = None) -> web.Application:
    app = web.Application(client_max_size=10 * 1024 * 1024)
    app[CORE_KEY] = core
    app[CONTROL_KEY] = Control(core)
    app[INFO_KEY] = info if info is not None else {}
    app.router.add_route("*", "/v1/{tail:.*}", api_handler)
    app.router.add_route("*", "/_emulator/{tail:.*}", control_handler)
    app.router.add_route("*", "/{tail:.*}", fallback_handler)
    return app
