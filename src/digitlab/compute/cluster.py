"""Running digitlab's work on Ray: connecting to a cluster, or starting a local one.

Ray is an optional extra (`pip install "digitlab[ray]"`), imported only when asked for, so the
core install never needs it. `connected(address)` uses a Ray that is already initialised in this
process, else connects to the cluster at `address`, else starts a local Ray for the duration of
the block; the digitlab environment variables (data folder, cache, offline) travel with the work.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import ModuleType

from digitlab.errors import DigitlabError

INSTALL_HINT = 'Ray is not installed; install it with: pip install "digitlab[ray]"'


# Variables that decide where data comes from; the workers need the caller's values.
_FORWARDED_VARIABLES = ("DIGITLAB_DATA", "DIGITLAB_CACHE", "DIGITLAB_OFFLINE", "DIGITLAB_MIRRORS",
                        "KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")


def import_ray() -> ModuleType:
    """The ray module, or a DigitlabError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise DigitlabError(INSTALL_HINT) from None
    return ray


def forwarded_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in _FORWARDED_VARIABLES if name in os.environ}


@contextlib.contextmanager
def connected(address: str | None = None) -> Iterator[ModuleType]:
    """Ray, initialised: the running one, the cluster at `address`, or a local one started now.

    A Ray started (or connected to) here is shut down when the block ends; one that was
    already initialised is left running.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": forwarded_environment()})
    except ConnectionError as error:
        raise DigitlabError(f"cannot connect to the Ray cluster at {address}: {error}") from None
    try:
        yield ray
    finally:
        ray.shutdown()
