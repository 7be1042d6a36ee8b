"""Running the app under uvicorn: in the foreground (`annotate serve`) or in a thread (the stage)."""

from __future__ import annotations

import errno
import socket
import threading
import time
from contextlib import contextmanager

from posttrain.errors import ConfigError


def check_port_free(host: str, port: int) -> None:
    """A ConfigError naming the fix when host:port is taken or not ours to bind."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
            raise ConfigError(f"port {port} on {host} {why}; choose another with port=N") from None


def _server(app, host: str, port: int):
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    return uvicorn.Server(config)


def serve_forever(app, host: str, port: int) -> None:
    """Serve until Ctrl-C / SIGTERM (uvicorn finishes the requests in flight, then returns)."""
    check_port_free(host, port)
    print(f"annotate: serving on http://{host}:{port}  (Ctrl-C stops; every acknowledged label is already saved)", flush=True)
    _server(app, host, port).run()


@contextmanager
def background_server(app, host: str = "127.0.0.1", port: int = 0):
    """Serve in a daemon thread; yields the base URL (port 0: a free port)."""
    check_port_free(host, port)
    server = _server(app, host, port)
    thread = threading.Thread(target=server.run, name="annotate-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ConfigError(f"the annotation server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
