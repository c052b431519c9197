"""/metrics, /healthz and /ready on the Faust worker's web server.

/healthz answers "should this process be restarted?": the event loop answers (it serves the request)
and the hot path is neither dead nor stalled (work waiting, nothing acked for ``stall_seconds``).
/ready answers "should it get traffic / count as up?": model loaded (a worker only exists with a
loaded model) and partitions assigned. The decisions are pure functions so they are unit tested.
"""

from __future__ import annotations

import time

import faust
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, generate_latest

from stream_tagger.hot_path import HotPathState

# aiohttp refuses a charset inside content_type; prometheus' text format is UTF-8 by definition.
_EXPOSITION_TYPE = "text/plain; version=0.0.4"


def health(state: HotPathState, stall_seconds: float, now: float | None = None) -> tuple[bool, str]:
    if state.failure:
        return False, f"hot path failed: {state.failure}"
    if not state.running:
        # Starting (group join) or stopping: not a reason to restart the process; /ready says 503.
        return True, "hot path not running"
    idle = (now if now is not None else time.monotonic()) - state.last_progress
    lag = state.total_lag()
    if lag > 0 and idle > stall_seconds:
        return False, f"stalled: {lag} messages waiting, nothing processed for {idle:.0f}s"
    return True, "ok"


def readiness(state: HotPathState) -> tuple[bool, str]:
    if not state.running:
        return False, "hot path not running"
    if not state.assigned:
        return False, "no partitions assigned"
    return True, f"model loaded, {len(state.assigned)} partition(s) assigned"


def register_metrics_view(app: faust.App, registry: CollectorRegistry) -> None:
    """/metrics alone: the feedback worker serves it without the hot path's health views."""

    @app.page("/metrics")
    async def metrics(web: View, _request: Request) -> Response:
        return web.bytes(generate_latest(registry), content_type=_EXPOSITION_TYPE)


def register_views(
    app: faust.App, registry: CollectorRegistry, state: HotPathState, stall_seconds: float
) -> None:
    register_metrics_view(app, registry)

    @app.page("/healthz")
    async def healthz(web: View, _request: Request) -> Response:
        ok, reason = health(state, stall_seconds)
        return web.text(reason, status=200 if ok else 503)

    @app.page("/ready")
    async def ready(web: View, _request: Request) -> Response:
        ok, reason = readiness(state)
        return web.text(reason, status=200 if ok else 503)
