"""Soak test of `digitlab serve`: normal traffic with adversarial requests mixed in, for minutes.

Run: DIGITLAB_DATA=../shared/data/mnist python bench/serve_soak.py [--model RUN_OR_FILE] [--seconds 300]
     [--clients 8] [--adversarial 0.05]

Starts the server as its own process on a free 127.0.0.1 port (without --model, a fresh run of
the default recipe, with its model.onnx, as bench/serve_load.py makes). `--clients` threads send
MNIST test digits as PNG uploads; each request is, with probability `--adversarial`, replaced by one
of: a grid of thousands of dots, a decompression bomb (a PNG header claiming 10^10 pixels), a
malformed body (broken JSON, a multipart body without its image, random bytes), an upload
aborted halfway, or an upload that stalls (left open, the server must drop it on its own).

Printed: the normal requests' count, errors and p50/p99 latency, each adversarial kind's answers
by status code, and the server's resident memory at the start and the end. Normal requests must
see no error; adversarial ones must get 4xx answers (a 5xx is counted as a failure).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

from serve_load import (
    BOUNDARY,
    free_port,
    multipart_upload,
    png_bytes,
    post_upload,
    quick_model,
    resident_megabytes,
    wait_until_up,
)


def dot_grid() -> bytes:
    """A 1024x900 PNG of 5-pixel dots every 8 by 20 pixels: thousands of pieces of ink."""
    import numpy as np

    page = np.full((900, 1024), 255, np.uint8)
    for top in range(0, 900, 20):
        for left in range(0, 1024, 8):
            page[top : top + 5, left : left + 5] = 0
    return png_bytes(page)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb() -> bytes:
    """A PNG whose header claims 100,000 x 100,000 pixels, with almost no data."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + png_chunk(b"IEND", b""))


def raw_request(port: int, body: bytes, content_type: str, send: int | None, hold: float) -> int | str:
    """POST `body` on a fresh socket, sending only its first `send` bytes; then close at once
    (hold 0: an aborted upload) or keep the socket open for `hold` seconds (a stalled one)."""
    head = (f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=hold + 5) as connection:
        connection.sendall(head + body[: len(body) if send is None else send])
        if hold == 0:
            return "aborted"
        try:
            answer = connection.recv(64)
        except TimeoutError:
            return "open"
        return int(answer.split()[1]) if answer.startswith(b"HTTP/1.1") else "closed"


def adversarial_request(kind: str, port: int, payloads: dict[str, bytes]) -> int | str:
    if kind in ("aborted", "stalled"):
        body = multipart_upload(payloads["digit"])
        return raw_request(port, body, f"multipart/form-data; boundary={BOUNDARY}", len(body) // 2,
                           0 if kind == "aborted" else 40)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        if kind in ("dot grid", "bomb"):
            status, _ = post_upload(connection, multipart_upload(payloads[kind]))
            return status
        bodies = {"broken json": (b'{"image": "iVBOR', "application/json"),
                  "no image field": (f"--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}"),
                  "random bytes": (random.randbytes(2000), "image/png")}
        body, content_type = bodies[kind]
        connection.request("POST", "/api/predict", body=body, headers={"Content-Type": content_type})
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


KINDS = ("dot grid", "bomb", "broken json", "no image field", "random bytes", "aborted", "stalled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--adversarial", type=float, default=0.05, help="share of requests that are hostile")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    random.seed(arguments.seed)

    from digitlab.data.sources import load

    test = load("mnist:test")
    bodies = [multipart_upload(png_bytes(pixels)) for pixels in test.images[:1000]]
    payloads = {"digit": png_bytes(test.images[0]), "dot grid": dot_grid(), "bomb": bomb()}
    model = Path(arguments.model) if arguments.model else quick_model(Path(tempfile.mkdtemp(prefix="digitlab-soak-")))
    port = free_port()
    log_file = tempfile.TemporaryFile()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "digitlab"), "serve", str(model), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=log_file,
    )
    latencies: list[float] = []
    errors: list[str] = []
    hostile: dict[str, collections.Counter] = {kind: collections.Counter() for kind in KINDS}
    lock = threading.Lock()
    try:
        wait_until_up(port, server)
        memory_before = resident_megabytes(server.pid)
        deadline = time.perf_counter() + arguments.seconds

        stalls: list[threading.Thread] = []

        def record(kind: str) -> None:
            try:
                outcome = adversarial_request(kind, port, payloads)
            except OSError as error:
                outcome = type(error).__name__
            with lock:
                hostile[kind][outcome] += 1

        def client(seed: int) -> None:
            chooser = random.Random(seed)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            while time.perf_counter() < deadline:
                if chooser.random() < arguments.adversarial:
                    kind = chooser.choice(KINDS)
                    if kind == "stalled":  # held open in its own thread while this client goes on
                        stall = threading.Thread(target=record, args=(kind,))
                        stall.start()
                        with lock:
                            stalls.append(stall)
                    else:
                        record(kind)
                    continue
                started = time.perf_counter()
                try:
                    status, content = post_upload(connection, bodies[chooser.randrange(len(bodies))])
                    problem = None if status == 200 and json.loads(content)["found"] else str(status)
                except (OSError, http.client.HTTPException) as error:
                    connection.close()
                    problem = type(error).__name__
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if problem is not None:
                        errors.append(problem)
            connection.close()

        threads = [threading.Thread(target=client, args=(arguments.seed + number,))
                   for number in range(arguments.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        memory_after = resident_megabytes(server.pid)
        for thread in stalls:
            thread.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log_file.seek(0)
        log = log_file.read()

    latencies.sort()
    failures = sum(count for kind in KINDS for outcome, count in hostile[kind].items()
                   if isinstance(outcome, int) and outcome >= 500)
    tracebacks = log.decode(errors="replace").count("Traceback")
    print(f"{arguments.seconds:.0f} s, {arguments.clients} clients, {arguments.adversarial:.0%} adversarial, "
          f"model {model}")
    print(f"  normal requests: {len(latencies):,}, errors {len(errors)}"
          f"{' (' + ', '.join(sorted(set(errors))[:5]) + ')' if errors else ''}")
    if latencies:
        print(f"  normal latency p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
              f"p99 {latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000:.1f} ms")
    for kind in KINDS:
        answers = ", ".join(f"{outcome}: {count}" for outcome, count in sorted(hostile[kind].items(), key=str))
        print(f"  {kind:>15}: {answers or 'none sent'}")
    print(f"  adversarial answers that were 5xx: {failures}; tracebacks in the server's log: {tracebacks}")
    print(f"  server memory: {memory_before:.0f} MB at the start, {memory_after:.0f} MB at the end "
          f"({(memory_after - memory_before) / memory_before:+.1%})")


if __name__ == "__main__":
    main()
