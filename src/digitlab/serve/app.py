"""`digitlab serve`: a drawing page and an HTTP API that read handwritten digits with a model.

    GET  /              the drawing page (draw with mouse or finger, or upload a photo)
    POST /api/predict   an image (multipart field `image`, JSON base64 or a raw image/* body) or
                        784 pixels; answers the digits read, with probabilities and what the
                        model saw
    GET  /healthz       {"status": "ok", "model": NAME}
    GET  /docs          the API's Swagger UI, served from the package, so it works offline
    GET  /openapi.json  the OpenAPI description

The server binds 127.0.0.1 unless told otherwise. On any other address it needs an API token
(`Authorization: Bearer TOKEN` on /api/*), or an explicit `allow_no_token`. Bad input always
gets a 4xx answer with a one-line JSON `detail`; nothing a client sends can make it read more
than `max_body_bytes` or decode an image of more than `max_pixels`.

Images go through `digitlab.recognition.readings.read`, which finds, centres and scales the digits
MNIST-style. `pixels` are different: they are taken as already MNIST-style (28x28, white ink on
black, centred) and given to the model exactly as sent, so a client that does its own
preparation sees the model's answer for precisely those pixels.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import json
import logging
import math
import os
import secrets
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from digitlab import __version__
from digitlab.errors import DigitlabError
from digitlab.shape import IMAGE_SIDE, NUM_CLASSES

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_PIXELS",
    "TOKEN_ENVIRONMENT_VARIABLE",
    "create_app",
    "create_app_for_model",
    "is_loopback",
    "run",
]

PredictFunction = Callable[[np.ndarray], np.ndarray]

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
# A 40-megapixel photo decodes to 40 MB in greyscale; PIL's own bomb limit is about 89 MP.
DEFAULT_MAX_PIXELS = 40_000_000
TOKEN_ENVIRONMENT_VARIABLE = "DIGITLAB_API_TOKEN"
PREDICTION_THREADS = 2
NO_DIGIT_MESSAGE = "no digit found"
PIXEL_COUNT = IMAGE_SIDE * IMAGE_SIDE

logger = logging.getLogger("digitlab.serve.app")

_STATIC_PACKAGE = "digitlab.serve"
_STATIC_FOLDER = "static"
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8"}
_PAGE_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_JSON_FIELDS = {"image", "pixels", "multi_digit"}
_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"0", "false", "no", "off"}


# ---------------------------------------------------------------------------- answers


class DigitResult(BaseModel):
    """One digit read from the image."""

    digit: int = Field(description="the most probable digit, 0..9")
    confidence: float = Field(description="its probability")
    probabilities: list[float] = Field(description="the probability of each digit 0..9")
    top3: list[tuple[int, float]] = Field(description="the three most probable digits, best first")
    pixels: list[list[int]] = Field(description="the 28x28 image the model saw, rows of 0..255")
    box: list[int] | None = Field(
        default=None, description="where the digit is in the image: [left, top, right, bottom] in pixels"
    )


class Prediction(BaseModel):
    """What /api/predict answers."""

    text: str = Field(description='the digits read, left to right, e.g. "2026"; "" when none')
    digits: list[DigitResult]
    found: bool = Field(description="whether any digit was found")
    confidence: float | None = Field(default=None, description="the confidence of the whole reading")
    message: str | None = Field(default=None, description='"no digit found" when there was no ink')
    milliseconds: float = Field(description="time taken to read the image")


class Problem(BaseModel):
    """A request the server cannot answer, and why."""

    detail: str


class Health(BaseModel):
    """What /healthz answers: "ok" and the model's name."""

    status: str
    model: str


_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "empty body, or malformed JSON or multipart"},
    401: {"model": Problem, "description": "missing or wrong API token"},
    413: {"model": Problem, "description": "body or image too large"},
    415: {"model": Problem, "description": "not multipart/form-data, application/json or image/*"},
    422: {"model": Problem, "description": "not an image, bad base64, wrong pixels or fields"},
}

_IMAGE_FIELD_HELP = "a PNG, JPEG, GIF, BMP, WebP or TIFF image of one or more handwritten digits"
_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "format": "binary", "description": _IMAGE_FIELD_HELP},
                    "multi_digit": {
                        "type": "string",
                        "enum": sorted(_TRUE_WORDS | _FALSE_WORDS),
                        "default": "true",
                        "description": "a form field is text: true/false, 1/0, yes/no or on/off",
                    },
                },
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "image": {
                        "type": "string",
                        "description": "base64 PNG or JPEG, optionally a data: URL",
                    },
                    "pixels": {
                        "type": "array",
                        "items": {"type": "number", "minimum": 0, "maximum": 255},
                        "minItems": PIXEL_COUNT,
                        "maxItems": PIXEL_COUNT,
                        "description": "784 pixels 0..255, row-major 28x28, white ink on black, "
                        "already centred MNIST-style: the model sees them as they are",
                    },
                    "multi_digit": {"type": "boolean", "default": True},
                },
            },
            "examples": {
                "image": {"summary": "a base64 image", "value": {"image": "data:image/png;base64,iVBORw0KGgo..."}},
                "pixels": {"summary": "28x28 pixels", "value": {"pixels": [0] * PIXEL_COUNT}},
            },
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
}


# ---------------------------------------------------------------------------- reading requests


def _problem(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) one over `limit` bytes before reading more than that."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise _problem(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise _problem(413, f"the body is {int(declared):,} bytes; the limit is {limit:,}")
    chunks = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _problem(413, f"the body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _flag(value: Any, name: str) -> bool:
    """A true/false field from JSON (a boolean) or a form ("true", "0", "on"...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
        return value.strip().lower() in _TRUE_WORDS
    raise _problem(422, f"{name} must be true or false")


def _decode_base64_image(text: Any) -> bytes:
    """The bytes of a base64 image, optionally written as a data: URL."""
    if not isinstance(text, str):
        raise _problem(422, "image must be a string of base64 (or a data: URL)")
    text = text.strip()
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise _problem(422, "image is a data: URL but not a base64 one (data:image/png;base64,...)")
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _problem(422, "image is not valid base64") from None
    if not data:
        raise _problem(422, "image is empty")
    return data


def _checked_pixels(values: Any) -> np.ndarray:
    """784 numbers 0..255 (or 28 rows of 28) as a uint8 28x28 image."""
    if isinstance(values, list) and len(values) == IMAGE_SIDE and all(isinstance(row, list) for row in values):
        values = [value for row in values for value in row]
    if not isinstance(values, list):
        raise _problem(422, f"pixels must be a list of {PIXEL_COUNT} numbers (28x28, row-major)")
    if len(values) != PIXEL_COUNT:
        raise _problem(422, f"pixels must hold {PIXEL_COUNT} numbers (28x28, row-major), got {len(values)}")
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _problem(422, f"pixels[{index}] is not a number but {_json_kind(value)}")
        if not (isinstance(value, int) or math.isfinite(value)) or not 0 <= value <= 255:
            raise _problem(422, f"pixels[{index}] is {_clipped(value)}, outside 0..255")
    return np.rint(np.asarray(values, dtype=np.float64)).astype(np.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE)


def _json_kind(value: Any) -> str:
    kinds = {bool: "true or false", str: "a string", list: "a list", dict: "an object", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _clipped(value: Any, length: int = 24) -> str:
    text = repr(value) if isinstance(value, float) else str(value)
    return text if len(text) <= length else text[: length - 3] + "..."


@dataclass
class _Request:
    """What to read: image bytes or ready pixels, and whether to look for several digits."""

    multi_digit: bool
    image: bytes | None = None
    pixels: np.ndarray | None = None


def _json_request(body: bytes, multi_digit: bool) -> _Request:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:  # bad UTF-8 or JSON, or a number of 4,300+ digits
        raise _problem(400, f"the body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise _problem(422, 'the JSON body must be an object with "image" or "pixels"')
    unknown = sorted(set(document) - _JSON_FIELDS)
    if unknown:
        raise _problem(422, f"unknown field {unknown[0]!r}; fields are image, pixels and multi_digit")
    if "multi_digit" in document:
        multi_digit = _flag(document["multi_digit"], "multi_digit")
    if ("image" in document) == ("pixels" in document):
        raise _problem(422, 'give one of "image" (base64) or "pixels" (784 numbers)')
    if "image" in document:
        return _Request(multi_digit, image=_decode_base64_image(document["image"]))
    return _Request(multi_digit, pixels=_checked_pixels(document["pixels"]))


async def _form_request(request: Request, body: bytes, multi_digit: bool) -> _Request:
    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    # The body is already read (and bounded); parse it from memory.
    form = await Request(request.scope, replay).form(max_files=1, max_fields=4)
    try:
        if "multi_digit" in form:
            multi_digit = _flag(form["multi_digit"], "multi_digit")
        upload = form.get("image")
        if upload is None:
            raise _problem(422, 'the form has no "image" field; send the image file in a field named image')
        if not isinstance(upload, UploadFile):
            raise _problem(422, 'the "image" field must be a file upload')
        data = await upload.read()
    finally:
        await form.close()
    if not data:
        raise _problem(422, "the uploaded image is empty")
    return _Request(multi_digit, image=data)


async def _parse_request(request: Request, limit: int, multi_digit: bool) -> _Request:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    is_json = media_type == "application/json" or media_type.endswith("+json")
    is_form = media_type == "multipart/form-data"
    is_image = media_type.startswith("image/") or media_type == "application/octet-stream"
    if media_type and not (is_json or is_form or is_image):
        raise _problem(415, f"cannot read {media_type}; send multipart/form-data, application/json or image/*")
    body = await _read_body(request, limit)
    if not body:
        raise _problem(400, "the body is empty; send an image or pixels")
    if not media_type:
        raise _problem(415, "no Content-Type; send multipart/form-data, application/json or image/*")
    if is_json:
        return _json_request(body, multi_digit)
    if is_form:
        return await _form_request(request, body, multi_digit)
    return _Request(multi_digit, image=body)


def _check_image_size(data: bytes, max_pixels: int) -> None:
    """Refuse data that is not an image (422) or an image over `max_pixels` (413), from its header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise _problem(413, f"the image has too many pixels; the limit is {max_pixels:,}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise _problem(422, "not an image that can be read (PNG, JPEG, GIF, BMP, WebP or TIFF)") from None
    if width * height > max_pixels:
        raise _problem(413, f"the image is {width}x{height} pixels; the limit is {max_pixels:,} pixels")


# ---------------------------------------------------------------------------- predicting


class _RecordingPredictor:
    """The predict function, keeping each call's images and probabilities for the answer."""

    def __init__(self, predict_function: PredictFunction):
        self.predict_function = predict_function
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, images: np.ndarray) -> np.ndarray:
        probabilities = np.asarray(self.predict_function(images), dtype=np.float32)
        self.calls.append((np.asarray(images), probabilities))
        return probabilities

    def probabilities_for(self, pixels: np.ndarray) -> np.ndarray:
        for images, probabilities in self.calls:
            for index, image in enumerate(images):
                if np.array_equal(image, pixels):
                    return probabilities[index]
        return self(np.asarray(pixels, dtype=np.uint8)[np.newaxis])[0]


def _digit_result(probabilities: np.ndarray, pixels: np.ndarray, box: Any = None) -> dict[str, Any]:
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(NUM_CLASSES)
    order = np.argsort(-probabilities, kind="stable")
    digit = int(order[0])
    return {
        "digit": digit,
        "confidence": round(float(probabilities[digit]), 6),
        "probabilities": [round(float(value), 6) for value in probabilities],
        "top3": [[int(index), round(float(probabilities[index]), 6)] for index in order[:3]],
        "pixels": np.asarray(pixels, dtype=np.uint8).tolist(),
        "box": _box_list(box),
    }


def _box_list(box: Any) -> list[int] | None:
    """A digit's box as [left, top, right, bottom] in the image's pixels, when known."""
    if box is None:
        return None
    if hasattr(box, "as_tuple"):
        box = box.as_tuple()
    try:
        return [int(value) for value in box]
    except (TypeError, ValueError):
        return None


def _read_pixels(predict_function: PredictFunction, pixels: np.ndarray) -> dict[str, Any]:
    if not pixels.any():
        return {"text": "", "digits": [], "found": False, "confidence": None, "message": NO_DIGIT_MESSAGE}
    probabilities = np.asarray(predict_function(pixels[np.newaxis]), dtype=np.float32)[0]
    result = _digit_result(probabilities, pixels)
    return {"text": str(result["digit"]), "digits": [result], "found": True,
            "confidence": result["confidence"], "message": None}


def _read_image(predict_function: PredictFunction, image: bytes, multi_digit: bool) -> dict[str, Any]:
    from digitlab.recognition.readings import read

    recorder = _RecordingPredictor(predict_function)
    reading = read(recorder, image, multi_digit=multi_digit)
    digits = [
        _digit_result(recorder.probabilities_for(digit.pixels), digit.pixels, digit.box)
        for digit in reading.digits
    ]
    found = bool(digits)
    return {
        "text": reading.text if found else "",
        "digits": digits,
        "found": found,
        "confidence": round(float(reading.confidence), 6) if found else None,
        "message": None if found else NO_DIGIT_MESSAGE,
    }


def _answer(predict_function: PredictFunction, wanted: _Request) -> dict[str, Any]:
    """Read the digits (in a worker thread); the answer's fields but `milliseconds`."""
    if wanted.pixels is not None:
        return _read_pixels(predict_function, wanted.pixels)
    assert wanted.image is not None
    return _read_image(predict_function, wanted.image, wanted.multi_digit)


# ---------------------------------------------------------------------------- the app


@dataclass(frozen=True)
class _StaticFile:
    content: bytes
    media_type: str


def _package_files(package: str, folder: str, names: dict[str, str] | None = None) -> dict[str, _StaticFile]:
    """The files of a package folder by name, read once; only these names are ever served."""
    files = {}
    for entry in (resources.files(package) / folder).iterdir():
        if not entry.is_file() or entry.name.startswith("."):
            continue
        if names is None:
            media_type = _MEDIA_TYPES.get(Path(entry.name).suffix.lower())
        else:
            media_type = names.get(entry.name)
        if media_type is not None:
            files[entry.name] = _StaticFile(entry.read_bytes(), media_type)
    return files


def _docs_files() -> dict[str, _StaticFile]:
    """Swagger UI's files, shipped by the fastapi-offline package."""
    try:
        return _package_files("fastapi_offline", "static", _DOCS_ASSETS)
    except (ModuleNotFoundError, FileNotFoundError):
        return {}


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem.get("loc", ()) if part not in ("query", "body"))
        parts.append(f"{where}: {problem.get('msg', 'invalid')}" if where else str(problem.get("msg")))
    return "; ".join(parts) or "invalid request"


class _SecurityHeaders:
    """Adds headers every answer carries, unless the answer set them itself.

    A plain ASGI middleware: it only touches the start of each answer, where Starlette's
    `BaseHTTPMiddleware` would run every request through an extra task and stream.
    """

    headers = (
        (b"x-content-type-options", b"nosniff"),
        # The page may carry ?token=...; never send it on to another site.
        (b"referrer-policy", b"no-referrer"),
    )

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in self.headers if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    predict_function: PredictFunction,
    model_name: str,
    api_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> FastAPI:
    """The FastAPI app serving the drawing page and the API for one model.

    predict_function  uint8 (N, 28, 28) images -> float (N, 10) probabilities, as
                      `digitlab.inference.model_files.input_adapter(model)` gives; it is called from at most
                      two worker threads at once
    model_name        shown by /healthz and on the page
    api_token         if given, /api/* needs `Authorization: Bearer <api_token>` (401 otherwise);
                      the page, /healthz and the docs stay open
    max_body_bytes    larger request bodies are refused with 413, unread
    max_pixels        larger images (width x height) are refused with 413, undecoded
    """
    if max_body_bytes < 1 or max_pixels < 1:
        raise ValueError("max_body_bytes and max_pixels must be positive")
    app = FastAPI(
        title="digitlab",
        summary="Reads handwritten digits with a trained model.",
        description=(
            f"Model: **{model_name}**. Send an image (multipart field `image`, a raw `image/*` body "
            'or JSON `{"image": "<base64>"}`) or JSON `{"pixels": [784 numbers]}` to `/api/predict`. '
            "Images are centred and scaled MNIST-style before the model sees them; pixels are "
            "used as they are."
            + (" Every `/api/` request needs `Authorization: Bearer <token>`." if api_token else "")
        ),
        version=__version__,
        docs_url=None,
        redoc_url=None,
    )
    static_files = _package_files(_STATIC_PACKAGE, _STATIC_FOLDER)
    docs_files = _docs_files()
    limiter_holder: list[Any] = []

    def limiter() -> Any:
        # Created on first use, inside the event loop that will use it.
        if not limiter_holder:
            limiter_holder.append(anyio.CapacityLimiter(PREDICTION_THREADS))
        return limiter_holder[0]

    @app.exception_handler(RequestValidationError)
    async def validation_failed(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(error)}, status_code=422)

    app.add_middleware(_SecurityHeaders)

    bearer = HTTPBearer(auto_error=False, description="the token given to `digitlab serve --api-token`")

    def check_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if api_token is None:
            return
        if credentials is None:
            raise HTTPException(401, "this server needs an API token: send Authorization: Bearer <token>",
                                headers={"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(credentials.credentials.encode(), api_token.encode()):
            raise HTTPException(401, "wrong API token", headers={"WWW-Authenticate": "Bearer"})

    api_dependencies = [Depends(check_token)] if api_token is not None else []

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        index = static_files.get("index.html")
        if index is None:
            return HTMLResponse("<h1>digitlab</h1><p>The page is missing from this installation.</p>", 500)
        return Response(index.content, media_type=index.media_type,
                        headers={"Content-Security-Policy": _PAGE_SECURITY_POLICY, "Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        found = static_files.get(name)
        if found is None or name == "index.html":
            raise HTTPException(404, "Not Found")
        return Response(found.content, media_type=found.media_type, headers={"Cache-Control": "no-cache"})

    @app.get("/healthz", response_model=Health, summary="Whether the server is up, and its model")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": model_name}

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        if not docs_files:
            return HTMLResponse(
                '<!doctype html><title>digitlab API</title><p>Swagger UI is not installed; '
                f'the API is described in <a href="{root}/openapi.json">openapi.json</a>.</p>'
            )
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title="digitlab API",
            swagger_js_url=f"{root}/docs/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs/swagger-ui.css",
            swagger_favicon_url=f"{root}/static/favicon.svg",
            swagger_ui_parameters={"validatorUrl": None, "tryItOutEnabled": True},
        )

    @app.get("/docs/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        found = docs_files.get(name)
        if found is None:
            raise HTTPException(404, "Not Found")
        return Response(found.content, media_type=found.media_type,
                        headers={"Cache-Control": "public, max-age=86400"})

    @app.post(
        "/api/predict",
        response_model=Prediction,
        responses=_PROBLEMS,
        dependencies=api_dependencies,
        summary="Read the digits in an image, or 28x28 pixels",
        openapi_extra={"requestBody": _REQUEST_BODY},
    )
    async def predict(
        request: Request,
        multi_digit: bool = Query(True, description="look for several digits side by side (a body field wins)"),
    ) -> dict[str, Any]:
        """Read handwritten digits.

        Send one of: a multipart form with the image file in field `image`; a raw `image/*`
        body; JSON `{"image": "<base64 PNG/JPEG, or a data: URL>"}`; or JSON
        `{"pixels": [784 numbers 0..255]}` (28x28 row-major, white ink on black, used as is).
        An image with no ink answers 200 with `found: false` and `text: ""`.
        """
        wanted = await _parse_request(request, max_body_bytes, multi_digit)
        if wanted.image is not None:
            _check_image_size(wanted.image, max_pixels)
        started = time.perf_counter()
        try:
            answer = await anyio.to_thread.run_sync(_answer, predict_function, wanted, limiter=limiter())
        except HTTPException:
            raise
        except DigitlabError as error:
            raise _problem(422, str(error)) from None
        except Exception:
            logger.exception("reading an image failed")
            raise HTTPException(500, "the server failed to read this image; the error is in its log") from None
        answer["milliseconds"] = round((time.perf_counter() - started) * 1000, 1)
        return answer

    return app


# ---------------------------------------------------------------------------- running


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


def create_app_for_model(
    model_path: str | Path,
    api_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> FastAPI:
    """`create_app` for a saved model: a `.keras`, `.h5` or `.onnx` file or a run folder
    (its `model.onnx` when present and not older than `model.keras`: ONNX Runtime is faster),
    or an ensemble folder.

    Raises `digitlab.inference.model_files.ModelError` if the model cannot be loaded. The model is run once
    on a blank image, so the first request is not slowed by TensorFlow's start-up.
    """
    from digitlab.inference.classifier import load_model
    from digitlab.inference.model_files import fastest_model_file

    predict_function = load_model(fastest_model_file(model_path)).predict_function
    predict_function(np.zeros((1, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8))
    return create_app(predict_function, _model_name(Path(model_path)), api_token, max_body_bytes, max_pixels)


def run(
    model_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_token: str | None = None,
    allow_no_token: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> None:
    """Serve the drawing page and the API for the model at `model_path` until interrupted.

    The token is `api_token`, else the environment variable DIGITLAB_API_TOKEN, else none. On
    an address other than a loopback one (127.0.0.1, ::1, localhost) a server without a token
    would let anyone who can reach it use it, so that is refused with a DigitlabError unless
    `allow_no_token`. The check comes before the model is loaded.
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
    app = create_app_for_model(model_path, api_token, max_body_bytes, max_pixels)
    shown_host = f"[{host}]" if ":" in host else host
    address = f"http://{shown_host}:{port}/"
    print(f"digitlab: serving {_model_name(Path(model_path))} at {address}", flush=True)
    if api_token is not None:
        print(f"digitlab: open {address}?token={api_token} (the page keeps the token in memory only)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
