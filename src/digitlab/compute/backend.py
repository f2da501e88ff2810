"""Importing Keras once, quietly: TensorFlow's start-up log lines are noise to digitlab's users."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog|To enable the following instructions"
    r"|[IWE]\d{4} .*(port\.cc|cudart_stub|cuda_platform|cuda_executor|cpu_feature_guard|cuda_dnn"
    r"|cuda_fft|cuda_blas|cuda_diagnostics|computation_placer|gpu_device))"
)
_keras: ModuleType | None = None


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern[str] = _NOISE) -> Iterator[None]:
    """Capture everything written to standard error (file descriptor 2, so C++ logs too) while
    the block runs, then print the lines that `noise` does not match."""
    with tempfile.TemporaryFile(mode="w+b") as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line for line in captured.read().decode(errors="replace").splitlines()
                if line.strip() and not noise.match(line)
            ]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def keras() -> ModuleType:
    """The keras module, with its backend started; TensorFlow's start-up chatter filtered out."""
    global _keras
    if _keras is not None:
        return _keras
    with filtered_stderr():
        import keras as imported

        if imported.backend.backend() == "tensorflow":
            from digitlab.compute.devices import split_cpu_devices

            split_cpu_devices()  # DIGITLAB_CPU_DEVICES must act before the devices start
        imported.ops.convert_to_numpy(imported.ops.zeros((1,)))  # starts the devices
    _keras = imported
    return imported


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Build layers under Keras' dtype policy `name` ("float32", "mixed_bfloat16", ...), then
    put back the policy that was in force."""
    keras_module = keras()
    saved = keras_module.config.dtype_policy()
    keras_module.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras_module.config.set_dtype_policy(saved)
