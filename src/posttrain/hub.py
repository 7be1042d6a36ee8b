"""The Hugging Face hub: whether it can be asked at all (offline mode, its endpoint, a quick probe),
and pushing a finished model to it.

huggingface_hub (and datasets through it) retries an unreachable hub for most of a minute before it
gives up; a user without a network deserves the answer in seconds. The loaders of models and data
sets ask `reachable()` first and say what to do when it is False.

Pushing (`push_to_hub=true`): `check_push_options` runs with the config's validation, before any
work; `create_repo` before training (a refused token fails in seconds, not after the run) and
`push_folder` after it turn the hub's refusals and network failures into one-line UserErrors.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from posttrain.errors import ConfigError, UserError

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


# ---------------------------------------------------------------------------------------- pushing

LOGIN_FIX = "run `huggingface-cli login` or set HF_TOKEN to a token with write access"


def check_push_options(push: bool, model_id: str | None, private: bool | None) -> None:
    """A ConfigError, before any work, when push_to_hub=true cannot push (no repo id, offline mode, no
    token), or when a hub_* key is set without push_to_hub (it would be ignored)."""
    if not push:
        for key, value in (("hub_model_id", model_id), ("hub_private_repo", private)):
            if value is not None:
                raise ConfigError(f"config key '{key}' is set ({value!r}) but this run never reads it: it applies only "
                                  "with push_to_hub=true; remove it or set push_to_hub=true")
        return
    if not model_id:
        raise ConfigError("push_to_hub=true needs hub_model_id=NAMESPACE/NAME (or NAME, under your account): the Hub repo to create or update")
    from huggingface_hub import get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model_id)
    except HFValidationError:
        raise ConfigError(f"hub_model_id '{model_id}' is not a Hub repo id; use NAMESPACE/NAME of letters, digits, '-', '_' and '.'") from None
    if offline():
        raise ConfigError("push_to_hub=true but offline mode is on (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE or HF_DATASETS_OFFLINE); "
                          "unset it, or set push_to_hub=false and upload final/ later with `huggingface-cli upload`")
    if get_token() is None:
        raise ConfigError(f"push_to_hub=true but no Hugging Face token was found; {LOGIN_FIX}")


@contextmanager
def _hub_errors(doing: str, kept: str = ""):
    """The hub's refusals (401/403/...) and network failures while `doing` as one UserError naming the fix."""
    from huggingface_hub.errors import HfHubHTTPError

    tail = f"; {kept}" if kept else ""
    try:
        yield
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise UserError(f"could not {doing}: the Hub at {endpoint()} refused the token ({status}); {LOGIN_FIX}{tail}") from None
        raise UserError(f"could not {doing}: the Hub at {endpoint()} answered {status}: {str(exc).splitlines()[0]}{tail}") from None
    except Exception as exc:  # the transport's errors (httpx's ConnectError, ...), OSError
        if not isinstance(exc, OSError) and not type(exc).__module__.startswith(("httpx", "httpcore")):
            raise
        raise UserError(f"could not {doing}: the Hub at {endpoint()} cannot be reached ({type(exc).__name__}); "
                        f"check the network (or HF_ENDPOINT){tail}") from None


def create_repo(model_id: str, private: bool | None) -> str:
    """Create the model repo `model_id` unless it exists; returns its full id NAMESPACE/NAME."""
    from huggingface_hub import HfApi

    with _hub_errors(f"create the Hub repo {model_id}"):
        return HfApi().create_repo(model_id, private=private, exist_ok=True).repo_id


def push_folder(folder, repo_id: str, message: str) -> str:
    """Upload every file under `folder` as one commit on main of `repo_id`; returns the repo's URL.
    (One commit per stage: upload_folder may split a folder into several when hf_xet is installed.)
    On failure the UserError says that `folder` is intact and how to upload it by hand."""
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    additions = [CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=str(path))
                 for path in sorted(folder.rglob("*")) if path.is_file()]
    kept = f"{folder} is intact: upload it later with `huggingface-cli upload {repo_id} {folder}`"
    with _hub_errors(f"push {folder} to {repo_id}", kept):
        HfApi().create_commit(repo_id, additions, commit_message=message)
    return f"{endpoint()}/{repo_id}"
