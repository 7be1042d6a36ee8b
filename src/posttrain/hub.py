"""Whether the Hugging Face hub can be asked at all: offline mode, its endpoint, and a quick probe.

huggingface_hub (and datasets through it) retries an unreachable hub for most of a minute before it
gives up; a user without a network deserves the answer in seconds. The loaders of models and data
sets ask `reachable()` first and say what to do when it is False.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import urllib.parse
import urllib.request

PROBE_SECONDS = 3.0  # DNS and TCP connect


def offline() -> bool:
    """HF_HUB_OFFLINE=1 (or the legacy TRANSFORMERS_OFFLINE / HF_DATASETS_OFFLINE)."""
    from huggingface_hub import constants

    legacy = any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
                 for name in ("TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"))
    return bool(getattr(constants, "HF_HUB_OFFLINE", False)) or legacy


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT  # HF_ENDPOINT when set


@functools.cache
def reachable() -> bool:
    """Whether a TCP connection to the hub opens within PROBE_SECONDS, name lookup included (a thread,
    since a hanging resolver ignores socket timeouts). Behind a proxy: yes, the hub's client goes
    through it and we cannot tell."""
    if urllib.request.getproxies().get("https"):
        return True
    url = urllib.parse.urlsplit(endpoint())
    address = (url.hostname, url.port or (443 if url.scheme == "https" else 80))
    opened = threading.Event()

    def connect() -> None:
        try:
            socket.create_connection(address, timeout=PROBE_SECONDS).close()
            opened.set()
        except OSError:
            pass

    threading.Thread(target=connect, daemon=True).start()
    return opened.wait(PROBE_SECONDS)
