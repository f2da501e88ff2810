"""Reading what a client sent to /api/predict: the body within its limit, then an image or pixels.

A body is multipart (field `image`), JSON (`image` as base64 or `pixels`) or a raw image/*
body; anything else is refused with a 4xx answer whose `detail` says why in one line.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np
from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from digitlab.shape import IMAGE_SIDE

PIXEL_COUNT = IMAGE_SIDE * IMAGE_SIDE
JSON_FIELDS = {"image", "pixels", "multi_digit"}
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}
UPLOAD_SECONDS = 30.0  # for the whole body: a phone on a slow line sends 5 MB in far less

logger = logging.getLogger(__name__)


def refusal(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) one over `limit` bytes before reading more than that, and
    (408) one that has not arrived within UPLOAD_SECONDS: a stalled upload holds nothing for long.
    A client that goes away mid-upload is one line in the log."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise refusal(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise refusal(413, f"the body is {int(declared):,} bytes; the limit is {limit:,}")
    chunks = []
    received = 0
    try:
        with anyio.fail_after(UPLOAD_SECONDS):
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise refusal(413, f"the body is over the limit of {limit:,} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise refusal(408, f"the body did not arrive within {UPLOAD_SECONDS:g} s") from None
    except ClientDisconnect:
        logger.info("a client went away during its upload (%s bytes received)", f"{received:,}")
        raise refusal(400, "the client went away during the upload") from None
    return b"".join(chunks)


def _flag(value: Any, name: str) -> bool:
    """A true/false field from JSON (a boolean) or a form ("true", "0", "on"...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise refusal(422, f"{name} must be true or false")


def _decode_base64_image(text: Any) -> bytes:
    """The bytes of a base64 image, optionally written as a data: URL."""
    if not isinstance(text, str):
        raise refusal(422, "image must be a string of base64 (or a data: URL)")
    text = text.strip()
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise refusal(422, "image is a data: URL but not a base64 one (data:image/png;base64,...)")
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise refusal(422, "image is not valid base64") from None
    if not data:
        raise refusal(422, "image is empty")
    return data


def _checked_pixels(values: Any) -> np.ndarray:
    """784 numbers 0..255 (or 28 rows of 28) as a uint8 28x28 image."""
    if isinstance(values, list) and len(values) == IMAGE_SIDE and all(isinstance(row, list) for row in values):
        values = [value for row in values for value in row]
    if not isinstance(values, list):
        raise refusal(422, f"pixels must be a list of {PIXEL_COUNT} numbers (28x28, row-major)")
    if len(values) != PIXEL_COUNT:
        raise refusal(422, f"pixels must hold {PIXEL_COUNT} numbers (28x28, row-major), got {len(values)}")
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise refusal(422, f"pixels[{index}] is not a number but {_json_kind(value)}")
        if not (isinstance(value, int) or math.isfinite(value)) or not 0 <= value <= 255:
            raise refusal(422, f"pixels[{index}] is {_clipped(value)}, outside 0..255")
    return np.rint(np.asarray(values, dtype=np.float64)).astype(np.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE)


def _json_kind(value: Any) -> str:
    kinds = {bool: "true or false", str: "a string", list: "a list", dict: "an object", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _clipped(value: Any, length: int = 24) -> str:
    text = repr(value) if isinstance(value, float) else str(value)
    return text if len(text) <= length else text[: length - 3] + "..."


@dataclass
class ReadingRequest:
    """What to read: image bytes or ready pixels, and whether to look for several digits."""

    multi_digit: bool
    image: bytes | None = None
    pixels: np.ndarray | None = None


def _json_request(body: bytes, multi_digit: bool) -> ReadingRequest:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:  # bad UTF-8 or JSON, or a number of 4,300+ digits
        raise refusal(400, f"the body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise refusal(422, 'the JSON body must be an object with "image" or "pixels"')
    unknown = sorted(set(document) - JSON_FIELDS)
    if unknown:
        raise refusal(422, f"unknown field {unknown[0]!r}; fields are image, pixels and multi_digit")
    if "multi_digit" in document:
        multi_digit = _flag(document["multi_digit"], "multi_digit")
    if ("image" in document) == ("pixels" in document):
        raise refusal(422, 'give one of "image" (base64) or "pixels" (784 numbers)')
    if "image" in document:
        return ReadingRequest(multi_digit, image=_decode_base64_image(document["image"]))
    return ReadingRequest(multi_digit, pixels=_checked_pixels(document["pixels"]))


async def _form_fields(request: Request, body: bytes, names: tuple[str, ...]) -> tuple[bytes, dict[str, Any]]:
    """The uploaded image of a multipart body (field `image`) and its text fields among `names`."""
    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    # The body is already read (and bounded); parse it from memory.
    form = await Request(request.scope, replay).form(max_files=1, max_fields=4)
    try:
        fields = {name: form[name] for name in names if name in form}
        upload = form.get("image")
        if upload is None:
            raise refusal(422, 'the form has no "image" field; send the image file in a field named image')
        if not isinstance(upload, UploadFile):
            raise refusal(422, 'the "image" field must be a file upload')
        data = await upload.read()
    finally:
        await form.close()
    if not data:
        raise refusal(422, "the uploaded image is empty")
    return data, fields


async def _form_request(request: Request, body: bytes, multi_digit: bool) -> ReadingRequest:
    data, fields = await _form_fields(request, body, ("multi_digit",))
    if "multi_digit" in fields:
        multi_digit = _flag(fields["multi_digit"], "multi_digit")
    return ReadingRequest(multi_digit, image=data)


async def _body_and_kind(request: Request, limit: int, wanted: str) -> tuple[bytes, str]:
    """The bounded body and its kind: "json", "form" or "image"; 415 for any other."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    is_json = media_type == "application/json" or media_type.endswith("+json")
    is_form = media_type == "multipart/form-data"
    is_image = media_type.startswith("image/") or media_type == "application/octet-stream"
    if media_type and not (is_json or is_form or is_image):
        raise refusal(415, f"cannot read {media_type}; send multipart/form-data, application/json or image/*")
    body = await _read_body(request, limit)
    if not body:
        raise refusal(400, f"the body is empty; send {wanted}")
    if not media_type:
        raise refusal(415, "no Content-Type; send multipart/form-data, application/json or image/*")
    return body, "json" if is_json else "form" if is_form else "image"


async def parse_request(request: Request, limit: int, multi_digit: bool) -> ReadingRequest:
    body, kind = await _body_and_kind(request, limit, "an image or pixels")
    if kind == "json":
        return _json_request(body, multi_digit)
    if kind == "form":
        return await _form_request(request, body, multi_digit)
    return ReadingRequest(multi_digit, image=body)


def _label(value: Any) -> int:
    """A digit label from JSON (a number) or a form or query (text)."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():  # not "²"
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        shown = value if isinstance(value, str) else json.dumps(value)
        raise refusal(422, f"label must be a digit 0..9, got {_clipped(shown)}")
    return value


@dataclass
class ExampleRequest:
    """A labelled example to keep: the image as sent, and its digit."""

    image: bytes
    label: int


async def parse_example(request: Request, limit: int, label: str | None) -> ExampleRequest:
    """An example from multipart (fields `image` and `label`), JSON `{"image": base64, "label": 7}`
    or a raw image/* body with `?label=7`; a label in the body wins over the query's."""
    body, kind = await _body_and_kind(request, limit, "an image and its label")
    if kind == "json":
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise refusal(400, f"the body is not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise refusal(422, 'the JSON body must be an object with "image" and "label"')
        unknown = sorted(set(document) - {"image", "label"})
        if unknown:
            raise refusal(422, f"unknown field {unknown[0]!r}; fields are image and label")
        if "image" not in document:
            raise refusal(422, 'the JSON body has no "image" (base64, or a data: URL)')
        digit = _example_label(document.get("label", label))
        return ExampleRequest(_decode_base64_image(document["image"]), digit)
    if kind == "form":
        data, fields = await _form_fields(request, body, ("label",))
        return ExampleRequest(data, _example_label(fields.get("label", label)))
    return ExampleRequest(body, _example_label(label))


def _example_label(given: Any) -> int:
    if given is None:
        raise refusal(422, "no label: give the digit 0..9 the image shows (field or ?label=)")
    return _label(given)


def check_image_size(data: bytes, max_pixels: int) -> None:
    """Refuse data that is not an image (422) or an image over `max_pixels` (413), from its header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise refusal(413, f"the image has too many pixels; the limit is {max_pixels:,}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise refusal(422, "not an image that can be read (PNG, JPEG, GIF, BMP, WebP or TIFF)") from None
    if width * height > max_pixels:
        raise refusal(413, f"the image is {width}x{height} pixels; the limit is {max_pixels:,} pixels")
