"""Training on every local accelerator at once with TensorFlow's MirroredStrategy.

`TrainingConfig.distribute` asks for it: the model is built and compiled inside the strategy's
scope, each global batch of `batch_size` images is split across the devices and the gradients
are summed, so the results match one device's up to floating-point order.

The devices are the GPUs when there are any. Without GPUs, the environment variable
`DIGITLAB_CPU_DEVICES=N` splits the CPU into N logical devices when TensorFlow starts (it must
be set before digitlab first uses Keras), which is how the tests exercise this on a laptop.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from digitlab.errors import DigitlabError

CPU_DEVICES_VARIABLE = "DIGITLAB_CPU_DEVICES"


def split_cpu_devices() -> None:
    """Split the CPU into `DIGITLAB_CPU_DEVICES` logical devices; call before TensorFlow starts."""
    text = os.environ.get(CPU_DEVICES_VARIABLE, "").strip()
    if not text:
        return
    if not text.isdigit() or int(text) < 1:
        raise DigitlabError(f"{CPU_DEVICES_VARIABLE}={text!r}: expected a whole number of devices, at least 1")
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(int(text))]
        )
    except RuntimeError:
        print(f"note: TensorFlow had started before {CPU_DEVICES_VARIABLE} could split the CPU; "
              "it applies to new processes", file=sys.stderr)


def training_devices() -> list[str]:
    """The names of the devices a distributed run trains on: every GPU, else every logical CPU."""
    import tensorflow as tf

    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [device.name for device in devices]


def strategy_scope(distribute: bool) -> contextlib.AbstractContextManager[Any]:
    """The scope to build and compile the model in: a MirroredStrategy's over all local devices
    when `distribute` is on and there are two or more, else one that does nothing."""
    if not distribute:
        return contextlib.nullcontext()
    from digitlab.compute import backend

    keras = backend.keras()
    if keras.backend.backend() != "tensorflow":
        raise DigitlabError(f"distribute needs the TensorFlow backend; Keras is running on {keras.backend.backend()}")
    import tensorflow as tf

    devices = training_devices()
    if len(devices) < 2:
        print(f"note: one device ({devices[0] if devices else 'none found'}); distribute has nothing to "
              f"spread over, so training runs on it as usual", file=sys.stderr)
        return contextlib.nullcontext()
    strategy = tf.distribute.MirroredStrategy(devices)
    print(f"distributing each batch over {len(devices)} devices: {', '.join(devices)}", file=sys.stderr)
    return strategy.scope()


def model_scope(model: Any) -> contextlib.AbstractContextManager[Any]:
    """The scope of the strategy `model` was built under (none outside TensorFlow), in which
    variables that belong with the model, such as its optimizer's, must be made."""
    strategy = getattr(model, "distribute_strategy", None)
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def configure_threads(threads: int | None) -> None:
    if threads is None:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    except RuntimeError:
        print(f"note: TensorFlow already started; threads = {threads} applies from the next run",
              file=sys.stderr)
