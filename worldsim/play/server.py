"""`worldsim play`: the page (static/) and the WebSocket gateway on one local port, with the page's own ops."""

from __future__ import annotations

import signal
import threading
import webbrowser
from collections.abc import Callable, Sequence
from importlib import resources

from worldsim.world_model import WorldModel

from .gateway import WebSocketGateway
from .recording import export_op, world_frame_op

STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}


def pages() -> dict[str, tuple[str, bytes]]:
    """URL path → (content type, body) of the page's files, read from the installed package."""
    folder = resources.files("worldsim.play") / "static"
    return {route: (kind, (folder / name).read_bytes()) for route, (name, kind) in STATIC.items()}


def play_gateway(model: WorldModel, host: str = "127.0.0.1", port: int = 0, name: str | None = None,
                 allow_origins: Sequence[str] = (), **limits: object) -> WebSocketGateway:
    """The gateway that serves the page: its files, the `world_frame` and `export` ops, timelines; browsers may
    connect from the page's own origin and from `allow_origins` (e.g. a WebXR page served elsewhere)."""
    return WebSocketGateway(model, host, port, pages=pages(), name=name, origins=list(allow_origins),
                            extra_ops={"world_frame": world_frame_op(model), "export": export_op(model)},
                            **limits)  # type: ignore[arg-type]


def serve(model: WorldModel, name: str, host: str, port: int, open_browser: bool,
          allow_origins: Sequence[str] = (), echo: Callable[[str], None] = print, **limits: object) -> None:
    """Serve until Ctrl-C or SIGTERM; prints the address (and opens it in a browser when asked)."""
    gateway = play_gateway(model, host, port, name=name, allow_origins=allow_origins, **limits).start()
    echo(f"worldsim play: open {gateway.url} (model {name}; WebSocket API on {gateway.ws_url}; Ctrl-C stops)")
    stop = threading.Event()

    def terminate(*_: object) -> None:  # SIGTERM ends like Ctrl-C: connections and sessions closed, exit 0
        stop.set()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        if open_browser:
            webbrowser.open(gateway.url)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        gateway.stop()
