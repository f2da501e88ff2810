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

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from digitlab import __version__
from digitlab.errors import DigitlabError
from digitlab.serve.answers import PredictFunction, answer_reading
from digitlab.serve.collecting import CollectionFull, ExampleFolder
from digitlab.serve.requests import (
    FALSE_WORDS,
    PIXEL_COUNT,
    TRUE_WORDS,
    check_image_size,
    parse_example,
    parse_request,
    refusal,
)
from digitlab.serve.tuning import ServedModel, Tuner

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_PIXELS", "create_app"]


DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
# A 40-megapixel photo decodes to 40 MB in greyscale; PIL's own bomb limit is about 89 MP.
DEFAULT_MAX_PIXELS = 40_000_000
PREDICTION_THREADS = 2
READING_SECONDS = 10.0  # per request: the slowest image seen (a 1024x900 dot grid) takes 0.2 s

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
    """What /healthz answers: "ok", the model's name and whether examples are collected."""

    status: str
    model: str
    collecting: bool = Field(default=False, description="whether /api/examples keeps examples (serve --collect DIR)")


class Examples(BaseModel):
    """What /api/examples answers: where examples go and how many of each digit there are."""

    folder: str = Field(description="the folder examples are saved in, as DIR/<digit>/<name>.png")
    counts: list[int] = Field(description="examples of each digit 0..9")
    total: int
    saved: str | None = Field(default=None, description="the file just saved, relative to the folder")


class FinetuneState(BaseModel):
    """What /api/finetune answers: the latest fine-tune's state, log and figures."""

    state: str = Field(description="idle, running, finished or failed")
    seconds: float | None = None
    log: list[str] = Field(description="its progress lines, latest last")
    run: str | None = Field(default=None, description="the new run folder, once finished; the server reads with it")
    metrics: dict[str, Any] | None = Field(default=None, description="the run's figures, before and after")
    error: str | None = None


_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "empty body, or malformed JSON or multipart"},
    401: {"model": Problem, "description": "missing or wrong API token"},
    408: {"model": Problem, "description": "the body did not arrive in time"},
    413: {"model": Problem, "description": "body or image too large"},
    415: {"model": Problem, "description": "not multipart/form-data, application/json or image/*"},
    422: {"model": Problem, "description": "not an image, bad base64, wrong pixels or fields"},
    404: {"model": Problem, "description": "collecting and fine-tuning are off (serve without --collect)"},
    409: {"model": Problem, "description": "a fine-tune is running already, or there are too few examples"},
    503: {"model": Problem, "description": "reading the image took longer than the server allows"},
    507: {"model": Problem, "description": "the collection is full"},
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
                        "enum": sorted(TRUE_WORDS | FALSE_WORDS),
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


_EXAMPLE_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image", "label"],
                "properties": {
                    "image": {"type": "string", "format": "binary", "description": "one handwritten digit"},
                    "label": {"type": "string", "enum": [str(digit) for digit in range(10)]},
                },
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["image", "label"],
                "properties": {
                    "image": {"type": "string", "description": "base64 PNG or JPEG, optionally a data: URL"},
                    "label": {"type": "integer", "minimum": 0, "maximum": 9},
                },
            }
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
}


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


def _new_app(model_name: str, api_token: str | None) -> FastAPI:
    """The FastAPI app without routes: its description, one-line 422 answers, security headers."""
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

    @app.exception_handler(RequestValidationError)
    async def validation_failed(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(error)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 405:
            # Starlette names only the first route's methods; a path may have a route per method.
            methods = sorted({method for route in app.routes if getattr(route, "path", None) == request.url.path
                              for method in getattr(route, "methods", None) or ()})
            error.headers = {**(error.headers or {}), "Allow": ", ".join(methods)}
        return await http_exception_handler(request, error)

    app.add_middleware(_SecurityHeaders)
    return app


def _token_check(api_token: str | None) -> list[Any]:
    """The dependencies of /api/* routes: with a token, a check of `Authorization: Bearer`."""
    if api_token is None:
        return []
    bearer = HTTPBearer(auto_error=False, description="the token given to `digitlab serve --api-token`")

    def check_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if credentials is None:
            raise HTTPException(401, "this server needs an API token: send Authorization: Bearer <token>",
                                headers={"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(credentials.credentials.encode(), api_token.encode()):
            raise HTTPException(401, "wrong API token", headers={"WWW-Authenticate": "Bearer"})

    return [Depends(check_token)]


def _docs_page(root: str, swagger_installed: bool) -> HTMLResponse:
    """The /docs page: Swagger UI from files served here, or a link to openapi.json without it."""
    if not swagger_installed:
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


def create_app(
    predict_function: PredictFunction,
    model_name: str,
    api_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    examples: ExampleFolder | None = None,
    tuner: Tuner | None = None,
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
    examples          where POST /api/examples keeps labelled examples; without it, collecting is off (404)
    tuner             runs POST /api/finetune on the examples and swaps in the new model; the
                      model it serves (`tuner.served`) replaces `predict_function` and `model_name`
    """
    if max_body_bytes < 1 or max_pixels < 1:
        raise ValueError("max_body_bytes and max_pixels must be positive")
    fixed = ServedModel(predict_function, model_name)

    def served() -> ServedModel:
        return tuner.served if tuner is not None else fixed

    app = _new_app(model_name, api_token)
    api_dependencies = _token_check(api_token)
    static_files = _package_files(_STATIC_PACKAGE, _STATIC_FOLDER)
    docs_files = _docs_files()
    limiter_holder: list[Any] = []

    def limiter() -> Any:
        # Created on first use, inside the event loop that will use it.
        if not limiter_holder:
            limiter_holder.append(anyio.CapacityLimiter(PREDICTION_THREADS))
        return limiter_holder[0]

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
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": served().name, "collecting": examples is not None}

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        return _docs_page(request.scope.get("root_path", ""), bool(docs_files))

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
        wanted = await parse_request(request, max_body_bytes, multi_digit)
        if wanted.image is not None:
            check_image_size(wanted.image, max_pixels)
        started = time.perf_counter()
        try:
            with anyio.fail_after(READING_SECONDS):
                answer = await anyio.to_thread.run_sync(answer_reading, served().predict_function, wanted,
                                                        limiter=limiter(), abandon_on_cancel=True)
        except TimeoutError:
            logger.warning("a reading took over %g s and was abandoned", READING_SECONDS)
            raise refusal(503, f"reading this image took over {READING_SECONDS:g} s; try a smaller or "
                               "simpler image") from None
        except HTTPException:
            raise
        except DigitlabError as error:
            raise refusal(422, str(error)) from None
        except Exception:
            logger.exception("reading an image failed")
            raise HTTPException(500, "the server failed to read this image; the error is in its log") from None
        answer["milliseconds"] = round((time.perf_counter() - started) * 1000, 1)
        return answer

    def collection() -> ExampleFolder:
        if examples is None:
            raise HTTPException(404, "collecting is off: start the server with digitlab serve MODEL --collect DIR")
        return examples

    def examples_answer(folder: ExampleFolder, saved: str | None = None) -> dict[str, Any]:
        counts = folder.counts()
        return {"folder": str(folder.folder.resolve()), "counts": counts, "total": sum(counts), "saved": saved}

    @app.get("/api/examples", response_model=Examples, responses=_PROBLEMS, dependencies=api_dependencies,
             summary="Where collected examples go, and how many of each digit there are")
    async def list_examples() -> dict[str, Any]:
        return examples_answer(collection())

    @app.post("/api/examples", response_model=Examples, responses=_PROBLEMS, dependencies=api_dependencies,
              summary="Keep a labelled example of your handwriting",
              openapi_extra={"requestBody": _EXAMPLE_BODY})
    async def add_example(
        request: Request,
        label: str | None = Query(None, description="the digit 0..9 the image shows (a body field wins)"),
    ) -> dict[str, Any]:
        """Save an image of one digit with its label as DIR/<label>/<time>-<random>.png (never
        overwriting), for `digitlab finetune MODEL --data DIR`. Send a multipart form (fields
        `image` and `label`), JSON `{"image": "<base64>", "label": 7}` or a raw `image/*` body
        with `?label=7`."""
        folder = collection()
        example = await parse_example(request, max_body_bytes, label)
        check_image_size(example.image, max_pixels)
        try:
            saved = await anyio.to_thread.run_sync(folder.save, example.image, example.label)
        except CollectionFull as error:
            raise refusal(507, str(error)) from None
        except ValueError as error:  # an image Pillow opened but cannot write
            raise refusal(422, f"could not save the example: {error}") from None
        except OSError as error:
            logger.warning("could not save an example: %s", error)
            raise refusal(500, f"could not save the example: {error.strerror or error}") from None
        return examples_answer(folder, saved.as_posix())

    def tuning() -> Tuner:
        if tuner is None:
            raise HTTPException(404, "fine-tuning is off: start the server with digitlab serve MODEL --collect DIR")
        return tuner

    @app.get("/api/finetune", response_model=FinetuneState, responses=_PROBLEMS, dependencies=api_dependencies,
             summary="How the latest fine-tune on the collected examples is going")
    async def finetune_state() -> dict[str, Any]:
        return tuning().job.as_dict()

    @app.post("/api/finetune", response_model=FinetuneState, status_code=202, responses=_PROBLEMS,
              dependencies=api_dependencies, summary="Fine-tune the served model on the collected examples")
    async def start_finetune() -> dict[str, Any]:
        """Start fine-tuning a copy of the served model on the collected examples, in the
        background (seconds to a minute); poll GET /api/finetune. When it finishes the server
        reads with the new model. 409 if one is running or there are too few examples."""
        running = tuning()
        from digitlab.training.finetune import check_examples

        try:
            await anyio.to_thread.run_sync(check_examples, running.examples_folder)
            job = running.start()
        except DigitlabError as error:
            raise refusal(409, str(error)) from None
        return job.as_dict()

    return app

