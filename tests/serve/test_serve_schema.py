"""`digitlab serve` fuzzed from its own OpenAPI description: no request the schema allows (or
nearly allows) makes the server fail, and every answer matches what the schema promises."""

from __future__ import annotations

import tempfile
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from schemathesis.specs.openapi import checks
from test_serve import TOKEN, fake_predict

from digitlab import serve
from digitlab.serve.collecting import ExampleFolder

app = serve.create_app(fake_predict, "fake-model")

# Schema-valid data is not always a readable image (random bytes in the `image` field), so the
# server answering it with a 4xx is right: that check does not apply.
EXCLUDED_CHECKS = [checks.positive_data_acceptance]


def fuzzed(served) -> object:
    """A test sending `served` the requests its OpenAPI description allows, and invalid ones."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", served)

    @schema.parametrize()
    @hypothesis.settings(max_examples=40, derandomize=True, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    def test(case):
        response = case.call_and_validate(excluded_checks=EXCLUDED_CHECKS)
        assert response.status_code < 500

    return test


test_the_api_answers_as_its_schema_says = fuzzed(app)
# Without the token every /api/ request must be refused, whatever else it holds.
test_the_api_with_a_token_answers_as_its_schema_says = fuzzed(serve.create_app(fake_predict, "fake", api_token=TOKEN))
# Collecting on: examples are saved (in a folder of the system's temporary space).
test_the_collecting_api_answers_as_its_schema_says = fuzzed(serve.create_app(
    fake_predict, "fake", examples=ExampleFolder(Path(tempfile.mkdtemp(prefix="digitlab-fuzz-")) / "examples")))


@pytest.mark.parametrize("media_type", ["application/json", "multipart/form-data"])
def test_the_schema_describes_every_way_to_send_an_image(media_type):
    body = app.openapi()["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert "image" in body[media_type]["schema"]["properties"]
