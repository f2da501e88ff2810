"""Load on `digitlab serve`: 10,000 predictions from 8 concurrent clients over loopback.

Run: DIGITLAB_DATA=../shared/data/mnist python bench/serve_load.py [--model RUN_OR_FILE] [--requests 10000]

Starts the server as its own process on a free 127.0.0.1 port (without --model, a model is
trained first with the default recipe, whose run folder holds the model.onnx `serve` reads),
sends MNIST test digits as PNG uploads from `--clients` threads, and prints errors, requests
per second, p50/p99 latency, and the server's resident memory before and after (growth should
stay under 10%). Baseline in the same run: the same requests' prediction alone, in-process,
without HTTP.

The clients share the machine's cores with the server, so they are kept lean: each holds one
keep-alive `http.client` connection and sends multipart bodies built once, before timing starts.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def resident_megabytes(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def quick_model(folder: Path) -> Path:
    """A fresh run of the default recipe, as `digitlab train` leaves it: with its model.onnx."""
    from digitlab.training.api import train

    return train(runs_dir=str(folder), verbose=0).path


def png_bytes(pixels) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


BOUNDARY = "digitlab-load-boundary"


def multipart_upload(png: bytes) -> bytes:
    """A multipart/form-data body carrying `png` in the field `image`."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"digit.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    return head + png + f"\r\n--{BOUNDARY}--\r\n".encode()


def post_upload(connection: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    connection.request("POST", "/api/predict", body=body,
                       headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    answer = connection.getresponse()
    return answer.status, answer.read()


def wait_until_up(port: int, server: subprocess.Popen) -> None:
    for _ in range(600):
        if server.poll() is not None:
            raise SystemExit("the server stopped before answering")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    arguments = parser.parse_args()

    from digitlab.data.sources import load

    test = load("mnist:test")
    pngs = [png_bytes(pixels) for pixels in test.images[:1000]]
    bodies = [multipart_upload(png) for png in pngs]
    model = Path(arguments.model) if arguments.model else quick_model(Path(tempfile.mkdtemp(prefix="digitlab-load-")))
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "digitlab"), "serve", str(model), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(port, server)
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for body in bodies[:50]:
            post_upload(warm, body)
        warm.close()
        memory_before = resident_megabytes(server.pid)

        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        counter = iter(range(arguments.requests))

        def client() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for number in counter:
                started = time.perf_counter()
                try:
                    status, content = post_upload(connection, bodies[number % len(bodies)])
                    ok = status == 200 and json.loads(content)["found"]
                    problem = str(status)
                except (OSError, http.client.HTTPException) as error:
                    connection.close()
                    ok, problem = False, type(error).__name__
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if not ok:
                        errors.append(problem)
            connection.close()

        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(arguments.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        memory_after = resident_megabytes(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    from digitlab.inference.classifier import load_model
    from digitlab.inference.model_files import fastest_model_file

    reader = load_model(fastest_model_file(model))
    direct_started = time.perf_counter()
    for png in pngs[:500]:
        reader.read(png)
    direct_milliseconds = (time.perf_counter() - direct_started) / 500 * 1000

    latencies.sort()

    def percentile(share: float) -> float:
        return latencies[min(len(latencies) - 1, int(share * len(latencies)))] * 1000

    growth = (memory_after - memory_before) / memory_before
    print(f"{arguments.requests:,} PNG predictions, {arguments.clients} clients, model {model}")
    print(f"  errors: {len(errors)}{' (' + ', '.join(sorted(set(errors))[:5]) + ')' if errors else ''}")
    print(f"  requests/s: {arguments.requests / wall:.0f}")
    print(f"  latency p50 {percentile(0.50):.1f} ms, p99 {percentile(0.99):.1f} ms, "
          f"mean {statistics.mean(latencies) * 1000:.1f} ms")
    print(f"  server memory: {memory_before:.0f} MB before, {memory_after:.0f} MB after ({growth:+.1%})")
    print(f"  baseline, one reading in-process without HTTP: {direct_milliseconds:.1f} ms")


if __name__ == "__main__":
    main()
