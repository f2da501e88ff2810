"""Scale-out on Ray against plain digitlab on the same machine: prediction by shard and an ensemble.

Run: python bench/ray_scale.py [--images 1000000] [--shards 100] [--members 4] [--epochs 2]

1. A 4-member ensemble (tiny-convnet, generated learnable digits) trained one member after the
   other, then as Ray tasks on a local Ray: wall times and their ratio.
2. Batch prediction of `--images` generated 28x28 images, written as IDX shards in a temporary
   folder (never one array in memory), with the first member's model: on Ray Data
   (`predict_sharded(ray=True)`, one actor per CPU) and in this process, shard after shard
   (the baseline). Throughput in images/s, and the peak memory of the driver and Ray's
   workers and actors (PSS sampled every 0.2 s over the process tree with psutil; Ray's own
   daemons, gcs_server, raylet and agents, are added apart). The two folders of predictions are checked to be identical.

Timings are of this machine's CPU cores; on a shared machine read them as upper bounds.
"""

from __future__ import annotations

import argparse
import filecmp
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import make_learnable_digits  # noqa: E402
from digitlab.data.convert import convert
from digitlab.data.formats import idx
from digitlab.inference.sharded import predict_sharded
from digitlab.training.ensembles import train_ensemble

GIB = 1024 ** 3


class PeakMemory:
    """Samples the memory of this process and its descendants until stopped: proportional set
    sizes (PSS), so the libraries that every TensorFlow process maps are counted once, not per process."""

    def __init__(self) -> None:
        self.driver_and_workers = 0
        self.everything = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            workers = daemons = 0
            for child in me.children(recursive=True):
                try:
                    resident = child.memory_full_info().pss
                    is_worker = child.name().startswith("ray::") or "default_worker.py" in " ".join(child.cmdline())
                except psutil.Error:
                    continue
                if is_worker:
                    workers += resident
                else:
                    daemons += resident
            driver = me.memory_full_info().pss
            self.driver_and_workers = max(self.driver_and_workers, driver + workers)
            self.everything = max(self.everything, driver + workers + daemons)
            self._stop.wait(0.2)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def write_shards(folder: Path, images: int, shards: int) -> Path:
    """`images` generated digits as `shards` IDX files, made and written one shard at a time."""
    folder.mkdir(parents=True)
    per_shard = -(-images // shards)
    for number, start in enumerate(range(0, images, per_shard)):
        count = min(per_shard, images - start)
        generated = make_learnable_digits(count, seed=number).images
        idx.write_images(folder / f"shard-{number:04d}-images-idx3-ubyte", generated)
    return folder


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def measure_prediction(model: Path, shards: Path, folder: Path, on_ray: bool, cpus: int):
    """Predict every shard (on a local Ray of `cpus` CPUs, or in this process); what it did,
    its seconds and the peak memory seen, as (driver and workers, with Ray's daemons) in bytes."""
    if on_ray:
        import ray

        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    with PeakMemory() as memory:
        result, seconds = timed(predict_sharded, model, [shards], folder, ray=on_ray)
    if on_ray:
        ray.shutdown()  # here, not when the pool ends this process
    return result, seconds, (memory.driver_and_workers, memory.everything)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    arguments = parser.parse_args()

    import ray

    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        data = convert({"train": make_learnable_digits(2000), "test": make_learnable_digits(500, seed=1)},
                       work / "learnable.npz")
        options = dict(data=str(data), model="tiny-convnet", epochs=arguments.epochs, batch_size=64,
                       learning_rate=0.01, verbose=0)
        sequential, sequential_seconds = timed(train_ensemble, arguments.members,
                                               runs_dir=str(work / "sequential"), **options)
        _, ray_start_seconds = timed(ray.init, num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        _, ray_seconds = timed(train_ensemble, arguments.members, runs_dir=str(work / "ray"), ray=True, **options)
        ray.shutdown()
        print(f"ensemble of {arguments.members} tiny-convnets, {arguments.epochs} epochs on 1,800 images, {cpus} CPUs:")
        print(f"  sequential  {sequential_seconds:6.1f} s")
        print(f"  Ray tasks   {ray_seconds:6.1f} s   ({sequential_seconds / ray_seconds:.2f}x; "
              f"starting the local Ray took {ray_start_seconds:.1f} s more)")

        shards, shards_seconds = timed(write_shards, work / "shards", arguments.images, arguments.shards)
        size = sum(path.stat().st_size for path in shards.iterdir()) / GIB
        print(f"\nprediction of {arguments.images:,} images in {arguments.shards} IDX shards "
              f"({size:.2f} GiB on disk, written in {shards_seconds:.1f} s), model {sequential.members[0].path.name}:")
        model = sequential.members[0].path

        # Each in a fresh process, so neither is charged for the models and workers of the ensemble.
        spawn = multiprocessing.get_context("spawn")
        with spawn.Pool(1) as pool:
            on_ray, on_ray_seconds, ray_memory = pool.apply(measure_prediction,
                                                            (model, shards, work / "on-ray", True, cpus))
        with spawn.Pool(1) as pool:
            plain, plain_seconds, plain_memory = pool.apply(measure_prediction,
                                                            (model, shards, work / "plain", False, cpus))
        same = all(filecmp.cmp(work / "on-ray" / shard.part_name, work / "plain" / shard.part_name, shallow=False)
                   for shard in plain.shards)
        print(f"  Ray Data    {on_ray.images / on_ray_seconds:9,.0f} images/s  ({on_ray_seconds:.1f} s, "
              f"{cpus} actors); peak memory of driver + workers {ray_memory[0] / GIB:.2f} GiB "
              f"(with Ray's own daemons {ray_memory[1] / GIB:.2f} GiB)")
        print(f"  in-process  {plain.images / plain_seconds:9,.0f} images/s  ({plain_seconds:.1f} s); "
              f"peak memory {plain_memory[1] / GIB:.2f} GiB")
        print(f"  ratio       {plain_seconds / on_ray_seconds:.2f}x; the two sets of part files are "
              f"{'identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
