"""The drawing page in a real browser: digits drawn with the mouse, read by a real model.

Drives Debian's Chromium (/usr/bin/chromium; Playwright cannot download browsers here) against
`digitlab serve`'s app in uvicorn on a free loopback port, with a model trained for this test on
real MNIST (DIGITLAB_DATA). Skipped, saying why, when either is missing. Saves a screenshot of
the page to docs/drawing-page.png, the picture in the README.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import MNIST_FOLDER

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOT = Path(__file__).parents[2] / "docs" / "drawing-page.png"
QUIET_SECONDS = 0.4  # no request for this long (over the page's 150 ms throttle): reading done
READ_TIMEOUT_SECONDS = 15

# Strokes in the pad's own coordinates, 0..1 across and down; each is one press of the mouse.
ONE = [[(0.54, 0.18), (0.50, 0.50), (0.47, 0.82)]]
SEVEN = [[(0.28, 0.22), (0.72, 0.22), (0.60, 0.45), (0.46, 0.82)]]
ZERO = [[(0.5 + 0.21 * math.sin(2 * math.pi * step / 28), 0.5 - 0.31 * math.cos(2 * math.pi * step / 28))
         for step in range(30)]]

pytestmark = [pytest.mark.slow, pytest.mark.mnist]


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> Path:
    """A quickly trained Keras-example convnet: one epoch on 10,000 real MNIST images."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found; install Debian's chromium package to run the browser test")
    if not (MNIST_FOLDER / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("real MNIST files not found; set DIGITLAB_DATA")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    import digitlab

    run = digitlab.train("keras-example", data=str(MNIST_FOLDER), epochs=1, train_limit=10_000,
                         runs_dir=str(tmp_path_factory.mktemp("runs")), offline=True, verbose=0)
    return run.path


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """Run the app in uvicorn, in a thread, on a free loopback port; yields the page's address."""
    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@pytest.fixture(scope="session")
def server_url(trained_model) -> Iterator[str]:
    from digitlab.serve import create_app_for_model

    with serving(create_app_for_model(trained_model)) as url:
        yield url


class PredictRequests:
    """Counts the page's /api/predict requests, to tell when its readings are all back."""

    def __init__(self, page):
        self.sent = 0
        self.done = 0
        self.last = time.monotonic()
        page.on("request", lambda request: self._count(request, "sent"))
        page.on("requestfinished", lambda request: self._count(request, "done"))
        page.on("requestfailed", lambda request: self._count(request, "done"))

    def _count(self, request, event: str) -> None:
        if "/api/predict" in request.url:
            setattr(self, event, getattr(self, event) + 1)
            self.last = time.monotonic()

    def quiet(self) -> bool:
        return self.sent > 0 and self.sent == self.done and time.monotonic() - self.last > QUIET_SECONDS


def open_page(playwright, url: str):
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    context = browser.new_context(viewport={"width": 1100, "height": 820}, device_scale_factor=1)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#bars .bar-row")
    return browser, page


@pytest.fixture
def page(server_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser, page = open_page(playwright, server_url)
        yield page
        browser.close()


@pytest.fixture
def predict_requests(page) -> PredictRequests:
    return PredictRequests(page)


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw strokes on the pad with the mouse, in small steps so the page sees every move."""
    page.locator("#canvas").scroll_into_view_if_needed()
    box = page.locator("#canvas").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=6)
        page.mouse.up()


def wait_until_read(page, predict_requests: PredictRequests) -> None:
    """Wait until every reading the page asked for has come back and no more are coming."""
    deadline = time.monotonic() + READ_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        page.wait_for_timeout(50)
        if predict_requests.quiet():
            return
    raise AssertionError(f"the page's readings did not finish: {predict_requests.sent} sent, "
                         f"{predict_requests.done} done")


def seen_ink(page) -> int:
    """The sum of the pixels of "what the model saw"."""
    return page.evaluate("""() => {
        const seen = document.getElementById('seen');
        const data = seen.getContext('2d').getImageData(0, 0, seen.width, seen.height).data;
        let sum = 0;
        for (let index = 0; index < data.length; index += 4) sum += data[index];
        return sum;
    }""")


def pad_ink(page) -> int:
    """The sum of the drawing pad's pixels."""
    return page.evaluate("""() => {
        const canvas = document.getElementById('canvas');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let sum = 0;
        for (let index = 0; index < data.length; index += 4) sum += data[index];
        return sum;
    }""")


def shown_bars(page) -> list[str]:
    """The percentages shown beside the bars, 0 to 9."""
    return page.locator("#bars .bar-value").all_inner_texts()


def read_drawing(page, predict_requests, strokes) -> str:
    """Clear the pad, draw, and give the text the page shows once it has read the drawing."""
    page.click("#clear")
    draw(page, strokes)
    wait_until_read(page, predict_requests)
    return page.inner_text("#result")


def test_drawn_digits_are_read(page, predict_requests):
    readings, best_bars = {}, {}
    for expected, strokes in (("1", ONE), ("0", ZERO), ("7", SEVEN)):
        readings[expected] = read_drawing(page, predict_requests, strokes)
        best_bars[expected] = page.locator("#bars .bar-row.best .bar-label").inner_text()
        assert seen_ink(page) > 0
    assert readings == {"1": "1", "0": "0", "7": "7"}
    assert best_bars == readings
    assert page.inner_text("#confidence").endswith("% sure")

    # The "7" is on the page: that is the README's picture.
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.click("#clear")
    assert page.inner_text("#result") == ""
    assert page.inner_text("#confidence") == ""
    assert set(shown_bars(page)) == {"0%"}
    assert pad_ink(page) == 0
    assert seen_ink(page) == 0
    assert "Draw a digit" in page.inner_text("#status")


def test_readings_are_live_while_drawing_and_throttled(page, predict_requests):
    """A slow stroke of about 1.2 s is read while it is drawn, at most every 150 ms."""
    box = page.locator("#canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.15)
    page.mouse.down()
    started = time.monotonic()
    for step in range(1, 25):
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * (0.15 + 0.03 * step), steps=2)
        page.wait_for_timeout(50)
    stroke_seconds = time.monotonic() - started
    sent_while_drawing = predict_requests.sent
    page.mouse.up()
    wait_until_read(page, predict_requests)
    assert sent_while_drawing >= 3
    assert sent_while_drawing <= stroke_seconds / 0.150 + 2
    assert predict_requests.sent > sent_while_drawing  # and once more for the finished stroke
    assert page.inner_text("#result") == "1"


def test_uploaded_photo_with_two_digits(page, predict_requests):
    from PIL import Image, ImageDraw

    photo = Image.new("RGB", (360, 200), (235, 232, 225))
    pen = ImageDraw.Draw(photo)
    pen.line([(95, 40), (88, 160)], fill=(30, 30, 40), width=9)  # a 1
    pen.line([(190, 45), (290, 45), (225, 165)], fill=(30, 30, 40), width=9, joint="curve")  # a 7
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    page.set_input_files("#upload", files=[{"name": "seventeen.jpg", "mimeType": "image/jpeg",
                                            "buffer": buffer.getvalue()}])
    wait_until_read(page, predict_requests)
    assert page.locator("#photo-figure").is_visible()
    assert page.inner_text("#result") == "17"
    assert page.inner_text("#confidence").startswith("2 digits")
    assert "17" in page.inner_text("#photo-caption")


def test_page_asks_for_the_token_when_the_server_needs_one(trained_model):
    """With an API token the page shows a token field on 401, and #token= (or ?token=) in the address works."""
    from playwright.sync_api import expect, sync_playwright

    from digitlab.serve import create_app_for_model

    app = create_app_for_model(trained_model, api_token="page-token")
    with serving(app) as url, sync_playwright() as playwright:
        browser, page = open_page(playwright, url)
        draw(page, ONE)
        page.wait_for_selector("#token-form", state="visible")
        assert "needs an API token" in page.inner_text("#status")
        page.fill("#token", "page-token")
        page.click("#token-form button")
        expect(page.locator("#result")).to_have_text(re.compile(r"^\d+$"))

        for address in (url + "#token=page-token", url + "?token=page-token"):
            page.goto("about:blank")  # a fresh load, as opening the printed address in a new tab
            page.goto(address)
            assert "token" not in page.url  # taken out of the address, kept in memory
            draw(page, ONE)
            expect(page.locator("#result")).to_have_text(re.compile(r"^\d+$"))
            assert page.locator("#token-form").is_hidden()
        browser.close()


def test_teaching_it_your_handwriting(trained_model, tmp_path):
    """With --collect: correct a reading and it is saved under the right label; practise; fine-tune
    on a writer's examples from the page, which then reads with the new model."""
    from playwright.sync_api import expect, sync_playwright

    import digitlab
    from digitlab.data.writers import Writer
    from digitlab.serve import create_app_for_model

    folder = tmp_path / "mine"
    test = digitlab.load(str(MNIST_FOLDER), part="test")
    writer = Writer(seed=4, slant=22.0, stroke=1, aspect=1.28, strength=1.2)
    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True)
        for number, index in enumerate(np.flatnonzero(test.labels == digit)[:8]):
            written = writer.write(test.subset(np.array([index])))
            Image.fromarray(written.images[0]).save(folder / str(digit) / f"writer-{number}.png")
    app = create_app_for_model(trained_model, collect=folder, runs_dir=tmp_path / "runs",
                               finetune_options={"replay": str(MNIST_FOLDER), "epochs": 4, "steps_per_epoch": 10,
                                                 "styled": 20})
    with serving(app) as url, sync_playwright() as playwright:
        browser, page = open_page(playwright, url)
        requests = PredictRequests(page)
        page.wait_for_selector("#teach", state="visible")
        expect(page.locator("#collect-folder")).to_have_text(str(folder.resolve()))
        expect(page.locator("#count-values td").nth(7)).to_have_text("8")

        # Correct a reading: a drawn 1, said to be a 7, is saved as a 7, as drawn.
        read_drawing(page, requests, ONE)
        page.click("#correct")
        page.screenshot(path=str(SCREENSHOT.with_name("teaching.png")), full_page=True)
        page.click("#digit-picker >> text='7'")
        expect(page.locator("#teach-status")).to_contain_text("Saved as a 7")
        expect(page.locator("#count-values td").nth(7)).to_have_text("9")
        saved = [path for path in (folder / "7").iterdir() if not path.name.startswith("writer-")]
        assert len(saved) == 1
        with Image.open(saved[0]) as drawing:
            assert drawing.size == (280, 280)
        assert pad_ink(page) == 0  # cleared for the next one

        # Practice: the digit asked for is the label.
        page.fill("#rounds", "1")
        page.check("#practice")
        expect(page.locator("#prompt-digit")).to_have_text("0")
        draw(page, ZERO)
        wait_until_read(page, requests)
        page.click("#save-practice")
        expect(page.locator("#teach-status")).to_contain_text("Saved a 0")
        expect(page.locator("#prompt-digit")).to_have_text("1")
        assert len(list((folder / "0").glob("*.png"))) == 9
        page.uncheck("#practice")
        expect(page.locator("#verdict")).to_be_hidden()

        # Fine-tune from the page; the server then reads with the new model.
        page.click("#finetune")
        expect(page.locator("#teach-status")).to_contain_text("Done:", timeout=180_000)
        status = page.inner_text("#teach-status")
        before, after = (float(value) for value in re.findall(r"held-out digits ([\d.]+)% before, ([\d.]+)% after",
                                                              status)[0])
        assert after > before, status
        run_name = re.search(r"Now reading with (\S+?)\.$", status).group(1)
        expect(page.locator("#model-name")).to_have_text(Path(run_name).name)
        browser.close()
