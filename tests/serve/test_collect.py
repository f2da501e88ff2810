"""Collecting a person's examples through the API: labels, limits, tokens, never overwriting."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_serve import TOKEN, fake_predict

from digitlab import serve
from digitlab.errors import DigitlabError
from digitlab.serve.collecting import ExampleFolder

PNG_TYPE = {"Content-Type": "image/png"}


def png(size: tuple[int, int] = (60, 80), mode: str = "L") -> bytes:
    pixels = np.zeros((size[1], size[0]), dtype=np.uint8)
    pixels[10:-10, size[0] // 2 - 3 : size[0] // 2 + 3] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def collecting_client(folder, **options) -> TestClient:
    return TestClient(serve.create_app(fake_predict, "fake-model", examples=ExampleFolder(folder), **options))


@pytest.fixture
def client(tmp_path) -> TestClient:
    return collecting_client(tmp_path / "mine")


def saved_files(folder) -> dict[str, list[str]]:
    return {label.name: sorted(path.name for path in label.iterdir()) for label in sorted(folder.iterdir())}


def test_each_way_of_sending_saves_under_its_label(client, tmp_path):
    image = png()
    multipart = client.post("/api/examples", files={"image": ("seven.png", image, "image/png")}, data={"label": "7"})
    as_json = client.post("/api/examples", json={"image": base64.b64encode(image).decode(), "label": 3})
    data_url = client.post("/api/examples", json={"image": "data:image/png;base64," + base64.b64encode(image).decode(),
                                                  "label": 3})
    raw = client.post("/api/examples?label=0", content=image, headers={"Content-Type": "image/png"})
    assert [answer.status_code for answer in (multipart, as_json, data_url, raw)] == [200] * 4
    assert raw.json()["counts"] == [1, 0, 0, 2, 0, 0, 0, 1, 0, 0]
    assert raw.json()["total"] == 4
    assert raw.json()["saved"].startswith("0/") and raw.json()["saved"].endswith(".png")
    files = saved_files(tmp_path / "mine")
    assert {label: len(names) for label, names in files.items()} == {"0": 1, "3": 2, "7": 1}
    # the image as drawn: same size and pixels, readable as labelled data
    saved = tmp_path / "mine" / multipart.json()["saved"]
    with Image.open(saved) as reread, Image.open(io.BytesIO(image)) as sent:
        assert reread.size == sent.size
        assert np.array_equal(np.asarray(reread), np.asarray(sent))
    import digitlab

    dataset = digitlab.load(tmp_path / "mine")
    assert sorted(dataset.labels.tolist()) == [0, 3, 3, 7]
    listed = client.get("/api/examples").json()
    assert listed["counts"] == raw.json()["counts"] and listed["folder"] == str((tmp_path / "mine").resolve())


def test_the_same_image_twice_is_two_examples(client, tmp_path):
    for _ in range(3):
        assert client.post("/api/examples?label=5", content=png(), headers=PNG_TYPE).status_code == 200
    names = saved_files(tmp_path / "mine")["5"]
    assert len(names) == 3 and len(set(names)) == 3
    assert not [name for name in names if name.startswith(".")]  # no temporary file left behind


def test_examples_already_in_the_folder_are_counted_and_kept(tmp_path):
    folder = tmp_path / "mine"
    (folder / "4").mkdir(parents=True)
    (folder / "4" / "mine.png").write_bytes(png())
    client = collecting_client(folder)
    assert client.get("/api/examples").json()["counts"][4] == 1
    client.post("/api/examples?label=4", content=png(), headers={"Content-Type": "image/png"})
    assert (folder / "4" / "mine.png").read_bytes() == png()
    assert len(saved_files(folder)["4"]) == 2


@pytest.mark.parametrize(("request_options", "status", "words"), [
    ({"json": {"image": "x", "label": 11}}, 422, "label must be a digit 0..9"),
    ({"files": {"image": ("a.png", png(), "image/png")}, "data": {"label": "²"}}, 422, "label must be a digit"),
    ({"json": {"image": base64.b64encode(b"not an image").decode(), "label": 1}}, 422, "not an image"),
    ({"json": {"image": "@@@", "label": 1}}, 422, "not valid base64"),
    ({"json": {"label": 1}}, 422, 'no "image"'),
    ({"json": {"image": "eA==", "label": True}}, 422, "label must be a digit"),
    ({"json": {"image": "eA==", "label": 1, "colour": "red"}}, 422, "unknown field 'colour'"),
    ({"content": png(), "headers": {"Content-Type": "image/png"}}, 422, "no label"),
    ({"content": b"label=1", "headers": {"Content-Type": "text/plain"}}, 415, "cannot read text/plain"),
    ({"files": {"image": ("a.png", png(), "image/png")}, "data": {"label": "seven"}}, 422, "label must be a digit"),
    ({"files": {"picture": ("a.png", png(), "image/png")}, "data": {"label": "7"}}, 422, 'no "image" field'),
])
def test_bad_examples_are_refused_and_nothing_is_saved(client, tmp_path, request_options, status, words):
    answer = client.post("/api/examples", **request_options)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["detail"]
    assert not (tmp_path / "mine").exists() or not any((tmp_path / "mine").iterdir())


def test_size_limits_are_those_of_predict(tmp_path):
    client = collecting_client(tmp_path / "mine", max_body_bytes=2000, max_pixels=100 * 100)
    too_long = client.post("/api/examples?label=1", content=b"\0" * 3000, headers={"Content-Type": "image/png"})
    assert too_long.status_code == 413
    too_many_pixels = client.post("/api/examples?label=1", content=png((200, 200)), headers=PNG_TYPE)
    assert too_many_pixels.status_code == 413 and "200x200" in too_many_pixels.json()["detail"]


def test_a_full_collection_is_refused(tmp_path):
    examples = ExampleFolder(tmp_path / "mine", max_examples=2)
    client = TestClient(serve.create_app(fake_predict, "fake", examples=examples))
    statuses = [client.post("/api/examples?label=2", content=png(), headers={"Content-Type": "image/png"}).status_code
                for _ in range(3)]
    assert statuses == [200, 200, 507]


def test_collecting_needs_the_token_when_the_server_has_one(tmp_path):
    client = collecting_client(tmp_path / "mine", api_token=TOKEN)
    sent = {"content": png(), "headers": {"Content-Type": "image/png"}}
    assert client.post("/api/examples?label=1", **sent).status_code == 401
    assert client.get("/api/examples").status_code == 401
    assert client.post("/api/finetune").status_code == 401
    authorised = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/api/examples?label=1", content=png(), headers={**PNG_TYPE, **authorised}).status_code == 200
    assert client.get("/api/examples", headers=authorised).json()["total"] == 1


def test_without_collect_the_endpoints_say_how_to_turn_it_on():
    client = TestClient(serve.create_app(fake_predict, "fake"))
    assert client.get("/healthz").json()["collecting"] is False
    for answer in (client.get("/api/examples"), client.post("/api/examples?label=1", content=png(),
                                                            headers={"Content-Type": "image/png"}),
                   client.post("/api/finetune"), client.get("/api/finetune")):
        assert answer.status_code == 404
        assert "--collect DIR" in answer.json()["detail"]


def test_a_collect_folder_that_is_something_else_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DigitlabError, match="is a file"):
        ExampleFolder(tmp_path / "file")
    (tmp_path / "photos" / "holiday").mkdir(parents=True)
    with pytest.raises(DigitlabError, match="holiday"):
        ExampleFolder(tmp_path / "photos")


def test_serve_refuses_a_collect_path_that_is_a_file_before_loading_the_model(tmp_path, run_cli):
    (tmp_path / "notes.txt").write_text("x")
    result = run_cli("serve", tmp_path / "no-model.keras", "--collect", tmp_path / "notes.txt")
    assert result.code == 1
    assert "notes.txt: it is a file, not a folder" in result.err
