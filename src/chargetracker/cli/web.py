"""The in-process web server of ``chargetracker run --serve`` and ``chargetracker demo``:
the API + dashboard sharing the command's store and pipeline, in a background thread."""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any

from ..config import Settings
from ..runtime import Pipeline
from ..stores.base import Store

__all__ = ["ServerHandle", "start_server"]


class ServerHandle:
    """A web server running in a background thread."""

    def __init__(self, url: str, thread: threading.Thread, stopper: Any = None) -> None:
        self.url = url
        self.thread = thread
        self._stopper = stopper

    def wait_for_interrupt(self) -> None:
        """Block until Ctrl-C / SIGTERM (keeps serving a finished run)."""
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, lambda *_: stop.set())
        print(f"simulation finished; still serving {self.url} (Ctrl-C to quit)", file=sys.stderr, flush=True)
        while not stop.wait(0.5) and self.thread.is_alive():
            pass

    def stop(self) -> None:
        if self._stopper is not None:
            self._stopper()
        self.thread.join(timeout=5)


def start_server(settings: Settings, store: Store, pipeline: Pipeline, *,
                 timeout_s: float = 20.0) -> ServerHandle | None:
    """Start the API + dashboard on ``settings.api`` in a background thread.

    The app shares this process's pipeline and store
    (``chargetracker.api.app.create_app(settings, pipeline=pipeline)`` under uvicorn), so
    the dashboard reads what the runner commits. Returns None (terminal only, with the
    reason on stderr) when the server is not installed or cannot bind its port.
    """
    try:
        import uvicorn

        from ..api.app import create_app
    except ImportError as exc:
        print(f"web server not available ({exc}): terminal summary only; the base install "
              "brings it: pip install --upgrade chargetracker", file=sys.stderr, flush=True)
        return None
    host, port = settings.api.host, settings.api.port
    app = create_app(settings, store=store, pipeline=pipeline)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           access_log=False, server_header=False))
    thread = threading.Thread(target=server.run, name="chargetracker-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        server.should_exit = True
        print(f"web server could not start on {host}:{port} (port in use?): terminal summary only",
              file=sys.stderr, flush=True)
        return None

    def stopper() -> None:
        server.should_exit = True
    return ServerHandle(f"http://{host}:{port}", thread, stopper)
