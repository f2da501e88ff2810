"""`digitlab serve`: the drawing page and the HTTP API."""
