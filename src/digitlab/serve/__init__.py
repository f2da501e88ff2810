"""`digitlab serve`: the drawing page and the HTTP API.

`app` builds the FastAPI app (routes, static files, security headers), `requests` reads what a
client sends, `answers` reads the digits, `collecting` keeps a person's labelled examples,
`tuning` fine-tunes the served model on them in the background, `running` loads a model and
starts uvicorn.
"""

from digitlab.serve.app import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_PIXELS, PREDICTION_THREADS, create_app
from digitlab.serve.running import TOKEN_ENVIRONMENT_VARIABLE, create_app_for_model, is_loopback, run

__all__ = [
    "DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_PIXELS", "PREDICTION_THREADS", "TOKEN_ENVIRONMENT_VARIABLE",
    "create_app", "create_app_for_model", "is_loopback", "run",
]
