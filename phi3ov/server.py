"""Build the engine for the settings, put the UI (and the API) on one server, launch it."""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import threading
import time
from typing import Any

from . import cors, models
from .engine import BatchedEngine, Engine, LocalEngine, RemoteEngine, default_properties, switchable
from .errors import BadOptions
from .models import doctor
from .settings import ServerSettings

log = logging.getLogger(__name__)


def create_engine(settings: ServerSettings) -> Engine:
    """The local OpenVINO GenAI engine (batched or single), or a remote OpenAI-compatible server's."""
    if settings.backend == "openai":
        if not settings.base_url:
            raise BadOptions("--backend openai needs --base-url, e.g. --base-url http://localhost:8000/v3.")
        if settings.deterministic:
            raise BadOptions("--deterministic needs the local backend: a remote server decides its own batching "
                             "and caching.", "Drop --deterministic, or serve the model here (--backend local).")
        return RemoteEngine(settings.base_url, model=settings.remote_model or settings.model,
                            api_key=settings.remote_api_key, context_length=settings.context_length)
    ref = models.resolve(settings.model, cache_dir=settings.cache_dir)
    engine = make_engine(settings, ref)
    return switchable(engine, ref, lambda other: make_engine(settings, other), settings.cache_dir,
                      settings.models_dir, settings.models)


def make_engine(settings: ServerSettings, ref: models.ModelRef) -> Engine:
    """The local engine for one model folder."""
    doctor.diagnose(ref.path).raise_if_not_servable()  # every folder served has passed doctor
    properties = {**default_properties(settings.cache_dir), **dict(settings.ov_config)}
    if settings.engine == "single":
        return LocalEngine(ref, settings.device, properties=properties, prompt_lookup=settings.prompt_lookup,
                           deterministic=settings.deterministic, context_length=settings.context_length)
    return BatchedEngine(ref, settings.device, max_num_seqs=settings.max_num_seqs, kv_cache_gb=settings.kv_cache_gb,
                         max_batched_tokens=settings.max_batched_tokens,
                         properties=properties, prompt_lookup=settings.prompt_lookup,
                         deterministic=settings.deterministic, context_length=settings.context_length)


def check_api_key_policy(settings: ServerSettings) -> None:
    """Refuse to serve the API beyond this machine without a key, unless explicitly allowed."""
    exposed = settings.share or not is_loopback(settings.host)
    if exposed and not settings.api_key and not settings.allow_no_api_key:
        where = "through a --share link" if settings.share else f"on {settings.host}"
        raise BadOptions(
            f"Refusing to serve the OpenAI-compatible API {where} without an API key: anyone who can reach "
            "it could use the model.",
            "Set one with --api-key KEY (env PHI3OV_API_KEY), or pass --allow-no-api-key "
            "(env PHI3OV_ALLOW_NO_API_KEY=1) to serve it open on purpose.")


def port_in_use(settings: ServerSettings) -> BadOptions:
    return BadOptions(f"Port {settings.port} on {settings.host} is already in use.",
                      "Stop the other server, or pick another port with --port (env PHI3OV_PORT).")


def check_port_free(settings: ServerSettings) -> None:
    with socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself will
        try:
            sock.bind((settings.host, settings.port))
        except OSError:
            raise port_in_use(settings) from None


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(settings: ServerSettings, engine: Engine | None = None):
    """The Gradio Blocks for these settings, the engine (built if not given) and what the server counts."""
    from .api import Counters
    from .ui import build_ui

    engine = engine or create_engine(settings)
    engine.warm_up()
    engine.request_timeout_s = settings.request_timeout or None
    engine.log_prompts = settings.log_prompts  # after the warm-up: only people's messages are logged
    counters = Counters.for_engine(engine, settings)
    demo = build_ui(engine, settings, counters.metrics)
    demo.queue(default_concurrency_limit=engine.capabilities.max_concurrency)
    queue = getattr(demo, "_queue", None)
    if queue is not None:
        from .ui.queue_wake import install

        install(queue)  # Gradio's queue sleeps until an event comes instead of polling every 1 ms
    return demo, engine, counters


def launch_kwargs(settings: ServerSettings, engine: Engine, counters: Any = None) -> dict[str, Any]:
    from .ui import launch_kwargs as ui_kwargs

    kwargs: dict[str, Any] = dict(
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        inbrowser=settings.inbrowser,
        auth=settings.auth,
        show_error=True,
        app_kwargs={"routes": api_routes(settings, engine, counters), "lifespan": cors.lifespan(settings.cors_origins)},
        **ui_kwargs(),
    )
    return kwargs


def api_routes(settings: ServerSettings, engine: Engine, counters: Any = None) -> list:
    """The OpenAI-compatible routes (/v1/..., /health, /metrics) served beside the UI on the same port."""
    from .api import create_router

    return list(create_router(engine, settings, counters).routes)


def serve(settings: ServerSettings, *, block: bool = True):
    check_api_key_policy(settings)
    if not is_loopback(settings.host) and not settings.auth:
        log.warning("Listening on %s without --auth: anyone who can reach this machine can use the chat.",
                    settings.host)
    if settings.share and not settings.auth:
        log.warning("--share without --auth: anyone with the link can use the chat. Add --auth USER:PASSWORD.")
    check_port_free(settings)  # before loading a model, which can take a while
    demo, engine, counters = build_app(settings)
    stop = StopSignals() if block else None  # before the server answers: from then on a SIGTERM drains
    try:
        try:
            demo.launch(prevent_thread_lock=True, **launch_kwargs(settings, engine, counters))
        except OSError as err:
            if "port" in str(err).lower():
                raise port_in_use(settings) from None
            raise
        local = f"http://{settings.host}:{settings.port}"
        if settings.share and not getattr(demo, "share_url", None):
            log.warning(
                "No public link: the share service (gradio.live) could not be reached from this machine. "
                "The chat is still served at %s. Check the internet connection or firewall, or host it as a "
                "Hugging Face Space instead.", local)
        print(f"phi3ov: chatting with {engine.name} on {engine.device} at {local}", flush=True)
        if stop is not None:
            while not stop.requested.wait(0.5):
                pass
            drain(demo, engine, counters.slots, settings.drain_seconds)
    finally:
        if stop is not None:
            stop.restore()
    return demo


class StopSignals:
    """While installed, SIGTERM and Ctrl-C set `requested` instead of ending the process at once."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._previous = {sig: signal.signal(sig, lambda *_: self.requested.set())
                          for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def drain(demo: Any, engine: Engine, slots: Any, drain_s: float) -> None:
    """Refuse new API requests, let replies in flight finish for up to `drain_s` seconds, then close the
    server and the engine."""
    slots.closing = True
    in_flight = lambda: max(engine.running or 0, slots.taken)  # noqa: E731
    log.info("Stopping: %d replies in flight get up to %g s to finish.", in_flight(), drain_s)
    deadline = time.monotonic() + drain_s
    while in_flight() and time.monotonic() < deadline:
        time.sleep(0.1)
    if in_flight():
        log.warning("Stopping with %d replies unfinished after %g s.", in_flight(), drain_s)
    time.sleep(0.3)  # the last events are on their way to the clients
    demo.close()
    engine.close()
    log.info("Stopped.")


