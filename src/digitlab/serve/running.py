"""Running the server: loading the model, refusing an open server on a public address, uvicorn."""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI

from digitlab.errors import DigitlabError
from digitlab.serve.app import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_PIXELS, create_app
from digitlab.serve.collecting import ExampleFolder
from digitlab.serve.tuning import ServedModel, Tuner
from digitlab.shape import IMAGE_SIDE

TOKEN_ENVIRONMENT_VARIABLE = "DIGITLAB_API_TOKEN"
# Requests per second with a run's model.onnx over its model.keras, 8 clients on 2 cores (bench/serve_load.py).
ONNX_SPEED_UP = "about 11 times"
_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s]*")


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only: localhost, 127.x.x.x or ::1."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to any address


def _model_name(path: Path) -> str:
    """A run folder's name for a run's model, else the file's name."""
    path = path.expanduser().resolve()
    if path.is_file() and path.name in ("model.keras", "model.onnx") and path.parent.name:
        return path.parent.name
    return path.name


def _check_port_free(host: str, port: int) -> None:
    """A DigitlabError now, rather than uvicorn's log line after start-up, when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise DigitlabError(f"port {port} on {host} is in use; choose another with --port") from None
            raise DigitlabError(f"cannot serve on {host}:{port}: {error.strerror or error}") from None


def served_model(model_path: str | Path) -> ServedModel:
    """The model at `model_path`, ready to serve: a `.keras`, `.h5` or `.onnx` file or a run
    folder (its `model.onnx` when present and not older than `model.keras`: ONNX Runtime is
    faster), or an ensemble folder (each member's `model.onnx` likewise). It is run once on a
    blank image, so the first request is not slowed by the runtime's start-up. A model served
    with Keras gets a note on standard error saying how to serve it with ONNX Runtime.

    Raises `digitlab.inference.model_files.ModelError` if the model cannot be loaded.
    """
    from digitlab.inference.classifier import load_model
    from digitlab.inference.model_files import OnnxModel

    classifier = load_model(model_path, prefer_onnx=True)
    if not all(isinstance(member, OnnxModel) for member in classifier.members):
        print(f"digitlab: note: serving {model_path} with Keras; with ONNX Runtime it answers {ONNX_SPEED_UP} as "
              f"many requests per second: write its ONNX copy with `digitlab export {model_path}` (for a run "
              "folder or a .keras file, serve then picks it up)", file=sys.stderr, flush=True)
    predict_function = classifier.predict_function
    predict_function(np.zeros((1, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8))
    return ServedModel(predict_function, _model_name(Path(model_path)), Path(model_path))


def create_app_for_model(
    model_path: str | Path,
    api_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    collect: str | Path | None = None,
    runs_dir: str | Path = "runs",
    finetune_options: dict[str, Any] | None = None,
) -> FastAPI:
    """`create_app` for a saved model (see `served_model`).

    With `collect`, POST /api/examples keeps labelled examples in that folder and POST
    /api/finetune fine-tunes the model on them into a new run folder under `runs_dir`, which
    the server then reads with; `finetune_options` are `digitlab.finetune`'s options for it.
    """
    examples = ExampleFolder(collect) if collect is not None else None  # checked before the model loads
    served = served_model(model_path)
    tuner = None
    if examples is not None:
        tuner = Tuner(served, examples.folder, Path(runs_dir), served_model, finetune_options)
    return create_app(served.predict_function, served.name, api_token, max_body_bytes, max_pixels,
                      examples=examples, tuner=tuner)


def run(
    model_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_token: str | None = None,
    allow_no_token: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    collect: str | Path | None = None,
    runs_dir: str | Path = "runs",
) -> None:
    """Serve the drawing page and the API for the model at `model_path` until interrupted.

    The token is `api_token`, else the environment variable DIGITLAB_API_TOKEN, else none. On
    an address other than a loopback one (127.0.0.1, ::1, localhost) a server without a token
    would let anyone who can reach it use it, so that is refused with a DigitlabError unless
    `allow_no_token`. The check comes before the model is loaded. `collect` and `runs_dir`: see
    `create_app_for_model`.
    """
    import uvicorn

    if api_token is None:
        api_token = os.environ.get(TOKEN_ENVIRONMENT_VARIABLE) or None
    if api_token is not None and not api_token.strip():
        raise DigitlabError("the API token is empty; give a token, or leave it out")
    if not 0 <= port <= 65535:
        raise DigitlabError(f"--port {port} is not a port number (0..65535)")
    if not is_loopback(host) and api_token is None and not allow_no_token:
        raise DigitlabError(
            f"refusing to serve on {host} without an API token: anyone who can reach this machine "
            f"could use the API. Give --api-token TOKEN (or set {TOKEN_ENVIRONMENT_VARIABLE}), serve "
            "on 127.0.0.1, or pass --allow-no-token if an open server is what you want"
        )
    if not is_loopback(host) and api_token is None:
        print(f"digitlab: warning: serving on {host} with no API token: anyone who can reach it can use it",
              file=sys.stderr, flush=True)
    _check_port_free(host, port)
    app = create_app_for_model(model_path, api_token, max_body_bytes, max_pixels, collect, runs_dir)
    shown_host = f"[{host}]" if ":" in host else host
    address = f"http://{shown_host}:{port}/"
    print(f"digitlab: serving {_model_name(Path(model_path))} at {address}", flush=True)
    if collect is not None:
        print(f"digitlab: examples drawn on the page are saved in {Path(collect).expanduser().resolve()}; "
              f"fine-tuned models go to {Path(runs_dir).resolve()}", flush=True)
    if api_token is not None:
        # After "#": browsers never send the fragment, so the token stays out of every log.
        print(f"digitlab: open {address}#token={api_token} (the page keeps the token in memory only)", flush=True)
    logging.getLogger("uvicorn.access").addFilter(_HIDDEN_TOKENS)  # once, however often run() is called
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)


class HiddenTokens(logging.Filter):
    """Takes `token=...` out of the paths uvicorn's access log writes (a page opened with the
    token in its query, as older versions printed it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_TOKEN_IN_QUERY.sub(r"\1[hidden]", value) if isinstance(value, str) else value
                                for value in record.args)
        return True


_HIDDEN_TOKENS = HiddenTokens()
