"""`digitlab serve`: the HTTP API, its limits and its refusals, with a deterministic fake model."""

from __future__ import annotations

import base64
import io
import json
import logging
import struct
import threading
import time
import zlib

import anyio
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digitlab import serve
from digitlab.errors import DataError, DigitlabError

TOKEN = "s3cret-token"
_WEIGHTS = np.random.default_rng(7).normal(size=(784, 10)).astype(np.float32)


def fake_predict(images: np.ndarray) -> np.ndarray:
    """Deterministic (N, 10) probabilities: a fixed random linear map of the pixels, softmaxed."""
    images = np.asarray(images)
    assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)
    scores = images.reshape(len(images), -1).astype(np.float32) / 255 @ _WEIGHTS / 8
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@pytest.fixture
def client() -> TestClient:
    return TestClient(serve.create_app(fake_predict, "fake-model"))


@pytest.fixture
def token_client() -> TestClient:
    return TestClient(serve.create_app(fake_predict, "fake-model", api_token=TOKEN))


def drawing(digit_boxes: list[tuple[int, int, int, int]], size: tuple[int, int] = (200, 120),
            dark_ink: bool = True) -> Image.Image:
    """A photo-like picture: dark strokes (rectangle outlines) on white paper."""
    paper, ink = (255, 0) if dark_ink else (0, 255)
    image = Image.new("L", size, paper)
    pixels = np.array(image)
    for left, top, right, bottom in digit_boxes:
        pixels[top:bottom, left:left + 6] = ink
        pixels[top:bottom, right - 6:right] = ink
        pixels[top:top + 6, left:right] = ink
        pixels[bottom - 6:bottom, left:right] = ink
    return Image.fromarray(pixels)


def encoded(image: Image.Image, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB" if kind == "JPEG" else image.mode).save(buffer, kind)
    return buffer.getvalue()


ONE_DIGIT = encoded(drawing([(70, 20, 130, 100)]))
TWO_DIGITS = encoded(drawing([(20, 20, 80, 100), (120, 20, 180, 100)]))
BLANK = encoded(Image.new("L", (64, 64), 255))


def mnist_style_pixels() -> list[int]:
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[4:24, 12:16] = 255  # a "1"
    return pixels.ravel().tolist()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, compressed_rows: bytes) -> bytes:
    """A greyscale PNG file of width x height with the given compressed image data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunks = png_chunk(b"IHDR", header) + png_chunk(b"IDAT", compressed_rows) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims to be width x height, with a tiny (truncated) image body."""
    return png(width, height, zlib.compress(b"\0" * 64))


def decompression_bomb(side: int = 7_000) -> bytes:
    """A real, complete PNG of side x side black pixels: 49 MP, over the 40 MP limit, in 50 KB."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    rows_per_block = 500
    body = b"".join(compressor.compress(row * rows_per_block) for _ in range(side // rows_per_block))
    return png(side, side, body + compressor.flush())


def check_answer(answer: dict, digits: int) -> None:
    """The answer's shape, and that each digit's figures are the model's for the pixels it saw."""
    assert answer["found"] is True
    assert len(answer["digits"]) == digits
    assert answer["text"] == "".join(str(digit["digit"]) for digit in answer["digits"])
    assert answer["message"] is None
    assert answer["milliseconds"] >= 0
    for digit in answer["digits"]:
        pixels = np.array(digit["pixels"], dtype=np.uint8)
        assert pixels.shape == (28, 28)
        expected = fake_predict(pixels[np.newaxis])[0]
        assert digit["probabilities"] == pytest.approx(expected.tolist(), abs=1e-5)
        assert digit["digit"] == int(expected.argmax())
        assert digit["confidence"] == pytest.approx(float(expected.max()), abs=1e-5)
        assert [entry[0] for entry in digit["top3"]] == np.argsort(-expected)[:3].tolist()


# ---------------------------------------------------------------------------- what works


def test_health(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model": "fake-model", "collecting": False}


def test_page_and_static_files_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for element in ('id="canvas"', 'id="clear"', 'id="result"', 'id="bars"', 'id="seen"', 'id="upload"'):
        assert element in page.text
    assert "http://" not in page.text and "https://" not in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/favicon.svg").status_code == 200


def test_multipart_upload(client):
    response = client.post("/api/predict", files={"image": ("digit.png", ONE_DIGIT, "image/png")})
    assert response.status_code == 200, response.text
    check_answer(response.json(), 1)


def test_jpeg_upload(client):
    jpeg = encoded(drawing([(70, 20, 130, 100)]), "JPEG")
    response = client.post("/api/predict", files={"image": ("digit.jpg", jpeg, "image/jpeg")})
    assert response.status_code == 200, response.text
    check_answer(response.json(), 1)


@pytest.mark.parametrize("data_url", [False, True])
def test_json_base64_image(client, data_url):
    text = base64.b64encode(ONE_DIGIT).decode()
    if data_url:
        text = "data:image/png;base64," + text
    response = client.post("/api/predict", json={"image": text})
    assert response.status_code == 200, response.text
    check_answer(response.json(), 1)


def test_raw_image_body(client):
    response = client.post("/api/predict", content=ONE_DIGIT, headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    check_answer(response.json(), 1)


def test_pixels_are_used_as_they_are(client):
    pixels = mnist_style_pixels()
    response = client.post("/api/predict", json={"pixels": pixels})
    assert response.status_code == 200, response.text
    answer = response.json()
    check_answer(answer, 1)
    assert np.array(answer["digits"][0]["pixels"]).ravel().tolist() == pixels
    rows = np.array(pixels).reshape(28, 28).tolist()
    assert client.post("/api/predict", json={"pixels": rows}).json()["digits"] == answer["digits"]


def test_several_digits_and_multi_digit_switch(client):
    files = {"image": ("two.png", TWO_DIGITS, "image/png")}
    check_answer(client.post("/api/predict", files=files).json(), 2)
    check_answer(client.post("/api/predict?multi_digit=false", files=files).json(), 1)
    check_answer(client.post("/api/predict", files=files, data={"multi_digit": "false"}).json(), 1)
    text = base64.b64encode(TWO_DIGITS).decode()
    check_answer(client.post("/api/predict", json={"image": text, "multi_digit": False}).json(), 1)
    # A body field wins over the query.
    check_answer(client.post("/api/predict?multi_digit=false", json={"image": text, "multi_digit": True}).json(), 2)


def test_light_ink_on_dark_paper(client):
    image = encoded(drawing([(70, 20, 130, 100)], dark_ink=False))
    check_answer(client.post("/api/predict", content=image, headers={"Content-Type": "image/png"}).json(), 1)


@pytest.mark.parametrize("body", [{"files": {"image": ("blank.png", BLANK, "image/png")}},
                                  {"json": {"pixels": [0] * 784}}])
def test_no_ink_is_not_an_error(client, body):
    response = client.post("/api/predict", **body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["found"] is False
    assert answer["text"] == ""
    assert answer["digits"] == []
    assert answer["message"] == "no digit found"


# ---------------------------------------------------------------------------- what is refused


BAD_REQUESTS = {
    "empty body": (400, {"content": b"", "headers": {"Content-Type": "image/png"}}),
    "empty JSON body": (400, {"content": b"", "headers": {"Content-Type": "application/json"}}),
    "malformed JSON": (400, {"content": b"{image:", "headers": {"Content-Type": "application/json"}}),
    "not an image": (422, {"files": {"image": ("notes.png", b"these are words, not pixels", "image/png")}}),
    "raw body not an image": (422, {"content": b"GIF89a but no", "headers": {"Content-Type": "image/gif"}}),
    "bad base64": (422, {"json": {"image": "iVBOR!!not base64**"}}),
    "base64 of nothing": (422, {"json": {"image": ""}}),
    "base64 of text": (422, {"json": {"image": base64.b64encode(b"hello").decode()}}),
    "data URL without base64": (422, {"json": {"image": "data:image/png,abc"}}),
    "image not a string": (422, {"json": {"image": 12}}),
    "783 pixels": (422, {"json": {"pixels": [0] * 783}}),
    "785 pixels": (422, {"json": {"pixels": [0] * 785}}),
    "pixel 300": (422, {"json": {"pixels": [0] * 783 + [300]}}),
    "negative pixel": (422, {"json": {"pixels": [-1] + [0] * 783}}),
    "pixel not a number": (422, {"json": {"pixels": ["a"] + [0] * 783}}),
    "pixel true": (422, {"json": {"pixels": [True] + [0] * 783}}),
    "pixel NaN": (422, {"content": "{\"pixels\": [NaN" + ", 0" * 783 + "]}",
                        "headers": {"Content-Type": "application/json"}}),
    "pixel 10**400": (422, {"json": {"pixels": [10**400] + [0] * 783}}),
    "number of 5000 digits": (400, {"content": "{\"pixels\": [" + "9" * 5000 + "]}",
                                    "headers": {"Content-Type": "application/json"}}),
    "pixels not a list": (422, {"json": {"pixels": "0" * 784}}),
    "missing field": (422, {"json": {}}),
    "misspelt field": (422, {"json": {"pixel": [0] * 784}}),
    "image and pixels": (422, {"json": {"image": "aGk=", "pixels": [0] * 784}}),
    "JSON list": (422, {"json": [0] * 784}),
    "multi_digit not a flag": (422, {"json": {"pixels": [0] * 784, "multi_digit": "maybe"}}),
    "form without image": (422, {"data": {"picture": "x"}, "files": {"other": ("a.png", ONE_DIGIT, "image/png")}}),
    "image field not a file": (422, {"data": {"image": "aGk="}, "files": {"other": ("a.png", b"x", "image/png")}}),
    "empty upload": (422, {"files": {"image": ("empty.png", b"", "image/png")}}),
    "plain text": (415, {"content": b"7", "headers": {"Content-Type": "text/plain"}}),
    "XML": (415, {"content": b"<digit/>", "headers": {"Content-Type": "application/xml"}}),
    "no content type": (415, {"content": b"\x89PNG...."}),
    "decompression bomb": (413, {"content": decompression_bomb(), "headers": {"Content-Type": "image/png"}}),
    "absurd size in header": (413, {"files": {"image": ("huge.png", png_header_only(100_000, 100_000), "image/png")}}),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_input_gets_a_4xx_with_a_message(client, name):
    status, request = BAD_REQUESTS[name]
    response = client.post("/api/predict", **request)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail


def test_bad_query_value_gets_a_readable_422(client):
    response = client.post("/api/predict?multi_digit=perhaps", json={"pixels": [0] * 784})
    assert response.status_code == 422
    assert "multi_digit" in response.json()["detail"]


def test_body_over_the_limit_is_refused_by_its_length():
    client = TestClient(serve.create_app(fake_predict, "fake", max_body_bytes=1000))
    response = client.post("/api/predict", content=b"\0" * 1001, headers={"Content-Type": "image/png"})
    assert response.status_code == 413
    assert "1,000" in response.json()["detail"]
    big_json = json.dumps({"image": "A" * 2000})
    response = client.post("/api/predict", content=big_json, headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_body_over_the_limit_is_refused_without_reading_it_all():
    """A chunked body with no Content-Length is cut off just past the limit, the rest unread."""
    app = serve.create_app(fake_predict, "fake", max_body_bytes=10_000)
    status, received = _raw_post(app, [b"\0" * 1000] * 1000, {"content-type": "image/png"})
    assert status == 413
    assert received <= 11


def test_default_body_limit_is_5_mb(client):
    body = b"\0" * (5 * 1024 * 1024 + 1)
    response = client.post("/api/predict", content=body, headers={"Content-Type": "image/png"})
    assert response.status_code == 413


def test_image_over_the_pixel_limit():
    client = TestClient(serve.create_app(fake_predict, "fake", max_pixels=100 * 100))
    large = encoded(Image.new("L", (101, 100), 255))
    response = client.post("/api/predict", content=large, headers={"Content-Type": "image/png"})
    assert response.status_code == 413
    assert "101x100" in response.json()["detail"]
    small = encoded(Image.new("L", (100, 100), 255))
    assert client.post("/api/predict", content=small, headers={"Content-Type": "image/png"}).status_code == 200


def test_prediction_failure_is_a_generic_500_and_logged(caplog):
    def broken(images):
        raise RuntimeError("tensor shapes are all wrong")

    client = TestClient(serve.create_app(broken, "broken"), raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="digitlab.serve.app"):
        response = client.post("/api/predict", json={"pixels": mnist_style_pixels()})
    assert response.status_code == 500
    assert "tensor" not in response.json()["detail"]
    assert "tensor shapes are all wrong" in caplog.text


def test_digitlab_errors_from_reading_are_422():
    def refusing(images):
        raise DataError(None, "this model cannot read that")

    client = TestClient(serve.create_app(refusing, "refusing"))
    response = client.post("/api/predict", json={"pixels": mnist_style_pixels()})
    assert response.status_code == 422
    assert response.json()["detail"] == "this model cannot read that"


# ---------------------------------------------------------------------------- the API token


def test_token_is_needed_for_the_api(token_client):
    body = {"pixels": mnist_style_pixels()}
    missing = token_client.post("/api/predict", json=body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "token" in missing.json()["detail"]
    wrong = token_client.post("/api/predict", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong API token"
    not_bearer = token_client.post("/api/predict", json=body, headers={"Authorization": f"Basic {TOKEN}"})
    assert not_bearer.status_code == 401
    right = token_client.post("/api/predict", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200
    check_answer(right.json(), 1)


def test_token_is_checked_before_the_body_is_read(token_client):
    response = token_client.post("/api/predict", content=b"\0" * (6 * 1024 * 1024),
                                 headers={"Content-Type": "image/png"})
    assert response.status_code == 401


def test_page_health_and_docs_stay_open_with_a_token(token_client):
    for path in ("/", "/healthz", "/docs", "/openapi.json", "/static/app.js"):
        assert token_client.get(path).status_code == 200, path
    schemes = token_client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"


# ---------------------------------------------------------------------------- docs and static files


def test_docs_work_offline(client):
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "http://" not in docs.text and "https://" not in docs.text and "//cdn" not in docs.text
    for asset in ("/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"):
        assert asset in docs.text
        response = client.get(asset)
        assert response.status_code == 200 and len(response.content) > 10_000
    assert "/openapi.json" in docs.text


def test_openapi_describes_the_api(client):
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/api/predict"]["post"]
    assert set(operation["requestBody"]["content"]) >= {"multipart/form-data", "application/json"}
    assert {"200", "413", "415", "422"} <= set(operation["responses"])
    assert "/healthz" in document["paths"]


TRAVERSALS = [
    "/static/../app.py",
    "/static/%2e%2e/app.py",
    "/static/%2E%2E%2Fapp.py",
    "/static/..%2fapp.py",
    "/static/..%5capp.py",
    "/static/%252e%252e%252fapp.py",
    "/static/../../pyproject.toml",
    "/static/",
    "/static",
    "/static/index.html",
    "/static/.hidden",
    "/docs/../app.py",
    "/docs/%2e%2e%2fapp.py",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_path_traversal_or_listing(client, path):
    assert client.get(path).status_code == 404


def _raw_request(app, method: str, raw_path: bytes, chunks: list[bytes], headers: dict[str, str]) -> tuple[int, int]:
    """Send a request straight to the ASGI app, path as given and body in `chunks`, with no
    client in between to normalise the path or read the whole body first; the answer's status
    and how many chunks the app read."""
    from urllib.parse import unquote

    statuses = []
    received = 0
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": unquote(raw_path.decode()), "raw_path": raw_path,
        "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver")] + [(name.encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }

    async def receive():
        nonlocal received
        if received >= len(chunks):
            return {"type": "http.request", "body": b"", "more_body": False}
        received += 1
        return {"type": "http.request", "body": chunks[received - 1], "more_body": received < len(chunks)}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    anyio.run(app, scope, receive, send)
    return statuses[0], received


def _raw_get(app, raw_path: bytes) -> int:
    return _raw_request(app, "GET", raw_path, [], {})[0]


def _raw_post(app, chunks: list[bytes], headers: dict[str, str]) -> tuple[int, int]:
    return _raw_request(app, "POST", b"/api/predict", chunks, headers)


@pytest.mark.parametrize("raw_path", [b"/static/../app.py", b"/static/%2e%2e/app.py",
                                      b"/static/..%2fapp.py", b"/static/../../../etc/passwd"])
def test_no_path_traversal_unnormalised(raw_path):
    assert _raw_get(serve.create_app(fake_predict, "fake"), raw_path) == 404


# ---------------------------------------------------------------------------- concurrency


def test_slow_predictions_run_in_a_bounded_pool_off_the_event_loop():
    running = 0
    most_running = 0
    lock = threading.Lock()

    def slow_predict(images):
        nonlocal running, most_running
        with lock:
            running += 1
            most_running = max(most_running, running)
        time.sleep(0.3)
        with lock:
            running -= 1
        return fake_predict(images)

    app = serve.create_app(slow_predict, "slow")
    finished: list[str] = []

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            async def predict(name):
                response = await http.post("/api/predict", json={"pixels": mnist_style_pixels()})
                assert response.status_code == 200
                finished.append(name)

            async def health():
                await anyio.sleep(0.05)
                assert (await http.get("/healthz")).status_code == 200
                finished.append("health")

            async with anyio.create_task_group() as group:
                for index in range(4):
                    group.start_soon(predict, f"predict {index}")
                group.start_soon(health)

    started = time.perf_counter()
    anyio.run(scenario)
    assert finished[0] == "health"
    assert most_running == serve.PREDICTION_THREADS == 2
    assert time.perf_counter() - started >= 0.6  # 4 predictions, 2 at a time


# ---------------------------------------------------------------------------- running the server


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("[::1]", True), ("127.0.0.5", True), ("0.0.0.0", False),
                                            ("::", False), ("192.168.1.20", False), ("example.org", False)])
def test_is_loopback(host, loopback):
    assert serve.is_loopback(host) is loopback


def test_refuses_a_public_host_without_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv(serve.TOKEN_ENVIRONMENT_VARIABLE, raising=False)
    missing_model = tmp_path / "no-model.keras"
    with pytest.raises(DigitlabError, match="without an API token.*--api-token.*--allow-no-token"):
        serve.run(missing_model, host="0.0.0.0")


@pytest.mark.parametrize("how", ["token", "environment", "allow_no_token"])
def test_a_public_host_with_a_token_or_override_goes_on_to_load_the_model(tmp_path, monkeypatch, how):
    from digitlab.inference.model_files import ModelError

    monkeypatch.delenv(serve.TOKEN_ENVIRONMENT_VARIABLE, raising=False)
    options = {}
    if how == "token":
        options["api_token"] = TOKEN
    elif how == "environment":
        monkeypatch.setenv(serve.TOKEN_ENVIRONMENT_VARIABLE, TOKEN)
    else:
        options["allow_no_token"] = True
    with pytest.raises(ModelError, match="no such file"):
        serve.run(tmp_path / "no-model.keras", host="0.0.0.0", **options)


def test_empty_token_is_refused(tmp_path):
    with pytest.raises(DigitlabError, match="empty"):
        serve.run(tmp_path / "model.keras", api_token=" ")


def test_a_saved_keras_model(tmp_path, capsys):
    """create_app_for_model with a real (untrained) model from the zoo, saved and loaded; with no
    ONNX copy the server says how to serve faster, and with one it serves that, saying nothing."""
    from digitlab import models
    from digitlab.inference.export import write_onnx_copy

    folder = tmp_path / "20260101-000000-tiny"
    folder.mkdir()
    model = models.create("tiny-convnet")
    model.save(folder / "model.keras")
    serve.create_app_for_model(folder)
    note = capsys.readouterr().err
    assert "with Keras" in note and f"digitlab export {folder}" in note
    write_onnx_copy(model, folder)
    client = TestClient(serve.create_app_for_model(folder / "model.keras"))
    assert "with Keras" not in capsys.readouterr().err
    assert client.get("/healthz").json() == {"status": "ok", "model": folder.name, "collecting": False}
    response = client.post("/api/predict", files={"image": ("digit.png", ONE_DIGIT, "image/png")})
    assert response.status_code == 200, response.text
    digit = response.json()["digits"][0]
    assert sum(digit["probabilities"]) == pytest.approx(1, abs=1e-4)


def test_the_token_stays_out_of_the_access_log_and_the_printed_address(tmp_path, monkeypatch, capsys):
    import logging

    import uvicorn

    from digitlab.serve import running

    served = {}
    monkeypatch.setattr(running, "create_app_for_model", lambda *arguments: "the app")
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(app=app, **options))
    serve.run(tmp_path / "model.keras", api_token="s3cret-token")
    printed = capsys.readouterr().out
    assert served["app"] == "the app" and "#token=s3cret-token" in printed and "?token=" not in printed

    access = logging.getLogger("uvicorn.access")
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/?lang=en&token=s3cret-token", "1.1", 200), None)
    assert all(log_filter.filter(record) for log_filter in access.filters)
    assert "s3cret-token" not in record.getMessage() and "/?lang=en&token=[hidden]" in record.getMessage()


def upload(receive_messages):
    """A /api/predict request whose body arrives as the given ASGI messages (then nothing more)."""
    from starlette.requests import Request

    messages = list(receive_messages)

    async def receive():
        if messages:
            return messages.pop(0)
        await anyio.sleep(3600)  # the client stalls

    scope = {"type": "http", "method": "POST", "path": "/api/predict", "headers": [(b"content-type", b"image/png")],
             "query_string": b""}
    return Request(scope, receive)


def test_a_stalled_upload_is_refused_after_the_time_limit(monkeypatch):
    from fastapi import HTTPException

    from digitlab.serve import requests

    monkeypatch.setattr(requests, "UPLOAD_SECONDS", 0.2)
    request = upload([{"type": "http.request", "body": b"\x89PNG", "more_body": True}])
    with pytest.raises(HTTPException) as refused:
        anyio.run(requests.parse_request, request, 1000, True)
    assert refused.value.status_code == 408 and "0.2 s" in refused.value.detail


def test_a_client_gone_mid_upload_is_one_log_line(caplog):
    from fastapi import HTTPException

    from digitlab.serve import requests

    request = upload([{"type": "http.request", "body": b"\x89PNG", "more_body": True}, {"type": "http.disconnect"}])
    with caplog.at_level(logging.INFO, logger="digitlab.serve"), pytest.raises(HTTPException) as refused:
        anyio.run(requests.parse_request, request, 1000, True)
    assert refused.value.status_code == 400
    assert [record.getMessage() for record in caplog.records] == [
        "a client went away during its upload (4 bytes received)"]


def test_a_port_in_use_is_one_clear_error(tmp_path, monkeypatch):
    import socket

    from digitlab.serve import running

    monkeypatch.setattr(running, "create_app_for_model", lambda *arguments: pytest.fail("the model was loaded"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DigitlabError, match=f"port {port} on 127.0.0.1 is in use; choose another with --port"):
            serve.run(tmp_path / "model.keras", port=port)


def test_a_reading_over_the_time_budget_is_answered_503_and_the_server_goes_on(monkeypatch):
    from digitlab.serve import app as serve_app

    monkeypatch.setattr(serve_app, "READING_SECONDS", 0.3)

    def slow_predict(images):
        if images.max() > 0:
            time.sleep(1.5)  # an image that takes far too long
        return fake_predict(images)

    client = TestClient(serve.create_app(slow_predict, "slow"))
    slow = client.post("/api/predict", json={"pixels": [255] * 784})  # would succeed after 1.5 s
    assert slow.status_code == 503 and "took over 0.3 s" in slow.json()["detail"]
    blank = client.post("/api/predict", json={"pixels": [0] * 784})
    assert blank.status_code == 200
