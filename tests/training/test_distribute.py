"""train --distribute: MirroredStrategy over two logical CPU devices (in a fresh process, since the
devices are set when TensorFlow starts), resuming under the strategy, and one device."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import digitlab

SCRIPT = textwrap.dedent("""
    import sys
    import digitlab
    from digitlab.compute.backend import keras
    from digitlab.recipes.config import resolve
    from digitlab.training.fit import train

    class StopAfterFirstEpoch(keras().callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    data, runs = sys.argv[1], sys.argv[2]
    config = resolve("tiny-convnet", overrides={"data": data, "epochs": 2, "batch_size": 32,
                                                "learning_rate": 0.01, "runs_dir": runs, "distribute": True})
    try:
        train(config, verbose=0, callbacks=[StopAfterFirstEpoch()])
    except KeyboardInterrupt:
        pass
    (folder,) = __import__("pathlib").Path(runs).iterdir()
    run = digitlab.train(resume=folder, verbose=0)
    print("RESULT", run.metrics["epochs_run"], run.metrics["test_accuracy"])
""")


def test_training_is_distributed_over_two_cpu_devices_and_resumes(data_npz, tmp_path):
    environment = dict(os.environ, DIGITLAB_CPU_DEVICES="2")
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(data_npz), str(tmp_path / "runs")],
                            capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributing each batch over 2 devices: /device:CPU:0, /device:CPU:1" in result.stderr
    assert "interrupted: " in result.stderr  # the first epoch's checkpoint was kept
    epochs_run, test_accuracy = result.stdout.split("RESULT")[1].split()
    assert epochs_run == "2" and float(test_accuracy) > 0.2
    (folder,) = (tmp_path / "runs").iterdir()
    assert (folder / "config.toml").read_text().count("distribute = true") == 1
    history = (folder / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2"]  # each epoch once


def test_one_device_says_so_and_trains_as_usual(data_npz, tmp_path, capsys):
    run = digitlab.train("tiny-convnet", data=data_npz, epochs=1, batch_size=32, runs_dir=tmp_path,
                         verbose=0, distribute=True)
    assert "distribute has nothing to spread over, so training runs on it as usual" in capsys.readouterr().err
    assert run.config.distribute and json.loads((Path(run.path) / "metrics.json").read_text())["epochs_run"] == 1
