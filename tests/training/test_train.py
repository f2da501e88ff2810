"""Training: config precedence, schedules, the run folder, and a real short run on MNIST."""

import json
import tomllib

import numpy as np
import pytest

from conftest import make_learnable_digits
from digitlab.data.convert import convert
from digitlab.recipes.config import ConfigError, TrainingConfig, resolve


@pytest.fixture
def learnable_npz(tmp_path):
    return convert({"train": make_learnable_digits(300), "test": make_learnable_digits(100, seed=1)},
                   tmp_path / "learnable.npz")


def small(data, tmp_path, **overrides):
    settings = {"data": str(data), "model": "tiny-convnet", "epochs": 2, "batch_size": 32,
                "validation": 0.2, "runs_dir": str(tmp_path / "runs")} | overrides
    return resolve(overrides=settings)


def test_recipe_then_config_file_then_flags(tmp_path):
    config_file = tmp_path / "mine.toml"
    config_file.write_text('epochs = 7\nbatch_size = 16\n[augmentation]\nrotation = 5\n')
    config = resolve("three-conv-batchnorm", config_file, {"epochs": 2, "seed": None})
    assert (config.model, config.epochs, config.batch_size) == ("three-conv-batchnorm", 2, 16)
    assert config.augmentation.rotation == 5.0 and config.recipe == "three-conv-batchnorm"
    assert resolve("three-conv-batchnorm").epochs == 5


@pytest.mark.parametrize("text, message", [
    ('plateau_monitor = "val_acc"', r"'val_acc' is not a metric training logs \(Keras 3 logs it as 'val_accuracy'\)"),
    ('epoch = 3', r"mine.toml: unknown key 'epoch'"),
    ('epochs = "ten"', r"mine.toml: epochs must be int, got 'ten'"),
    ('optimizer = "adagrad"', r"optimizer = 'adagrad' is not one of adam, adamw, rmsprop, sgd"),
    ('[augmentation]\nshear = 0.2', r"unknown augmentation key 'shear'"),
    ('label_smoothing = 1.5', r"label_smoothing must be in \[0, 1\)"),
    ('epochs = ', r"mine.toml: not valid TOML"),
    ('precision = "bfloat16"', r"precision = 'bfloat16' is not one of float32, mixed_bfloat16, mixed_float16"),
])
def test_bad_configs_are_refused_with_the_reason(tmp_path, text, message):
    config_file = tmp_path / "mine.toml"
    config_file.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        resolve(config_file=config_file)


def test_unknown_recipe_lists_the_recipes():
    with pytest.raises(ConfigError, match="unknown recipe 'fastest'; recipes: .*keras-example"):
        resolve("fastest")


def test_exponential_schedule_gives_lr0_times_decay_per_epoch(learnable_npz, tmp_path):
    from digitlab.training.fit import train

    run = train(small(learnable_npz, tmp_path, epochs=3, schedule="exponential", decay_rate=0.9,
                      steps_per_epoch=2), verbose=0)
    assert np.allclose(run.history["learning_rate"], [1e-3, 9e-4, 8.1e-4], rtol=1e-5)


def test_plateau_halves_the_rate_when_validation_stalls(learnable_npz, tmp_path):
    from digitlab.training.fit import train

    # A rate this small cannot change any prediction, so validation accuracy never improves.
    config = small(learnable_npz, tmp_path, epochs=4, schedule="plateau", learning_rate=1e-9,
                   min_learning_rate=1e-12, plateau_patience=1, plateau_factor=0.5, steps_per_epoch=2)
    run = train(config, verbose=0)
    assert np.allclose(run.history["learning_rate"], [1e-9, 1e-9, 5e-10, 2.5e-10], rtol=1e-4)


def test_one_cycle_and_cosine_shapes():
    from digitlab.models.one_cycle import OneCycle
    from digitlab.training.schedules import learning_rate

    one_cycle = OneCycle(0.01, total_steps=100, warmup_fraction=0.25)
    values = [float(one_cycle(step)) for step in (0, 25, 60, 100)]
    assert values[0] == pytest.approx(0.0004) and values[1] == pytest.approx(0.01)
    assert values[1] > values[2] > values[3] and values[3] == pytest.approx(1e-6, rel=1e-3)
    cosine = learning_rate(TrainingConfig(schedule="cosine", learning_rate=0.1, min_learning_rate=0.001), 10)
    assert float(cosine(0)) == pytest.approx(0.1) and float(cosine(10)) == pytest.approx(0.001)


@pytest.mark.parametrize("extra", [
    {},
    {"label_smoothing": 0.1, "schedule": "one-cycle", "optimizer": "adamw",
     "augmentation": {"rotation": 10, "zoom": 0.1, "width_shift": 0.1, "height_shift": 0.1}},
], ids=["plain", "smoothing-augmentation-one-cycle"])
def test_run_folder_has_everything_and_model_reloads(learnable_npz, tmp_path, extra):
    from digitlab.inference.model_files import load_model
    from digitlab.training.fit import train

    run = train(small(learnable_npz, tmp_path, epochs=3, learning_rate=0.01, **extra), verbose=0)
    names = {path.name for path in run.path.iterdir()}
    assert {"config.toml", "model.keras", "history.csv", "metrics.json", "report.html", "curves.png",
            "confusion.png", "confusion-normalized.png"} <= names
    assert list(run.history["epoch"]) == [1, 2, 3]
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.5, metrics  # the bars are easy to learn
    saved = tomllib.loads((run.path / "config.toml").read_text())
    assert saved["model"] == "tiny-convnet" and saved["versions"]["keras"].startswith("3.")
    images = make_learnable_digits(50, seed=3).images
    assert np.array_equal(load_model(run.path).predict(images, verbose=0), run.model.predict(images, verbose=0))


@pytest.mark.parametrize("name", ["accurate", "fast", "handwriting", "keras-example", "three-conv-batchnorm",
                                  "four-conv-augmented"])
def test_shipped_recipe_is_valid_and_builds_its_model(name):
    from digitlab import models
    from digitlab.recipes.config import recipe_names

    assert name in recipe_names()
    config = resolve(name)
    config.validate()
    model = models.create(config.model, **config.model_options)
    assert model.output_shape == (None, 10)


def test_steps_per_execution_rounds_each_epoch_up_to_whole_executions(learnable_npz, tmp_path):
    from digitlab.compute.backend import keras
    from digitlab.training.fit import train

    class StepCounter(keras().callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.last_step_of_epoch = []

        def on_epoch_begin(self, epoch, logs=None):
            self.last_step_of_epoch.append(None)

        def on_train_batch_end(self, batch, logs=None):
            self.last_step_of_epoch[-1] = batch

    counter = StepCounter()
    # 240 training images in batches of 32 are 8 steps; executions of 3 steps make an epoch 9.
    run = train(small(learnable_npz, tmp_path, steps_per_execution=3), verbose=0, callbacks=[counter])
    assert counter.last_step_of_epoch == [8, 8]
    assert list(run.history["epoch"]) == [1, 2]


def test_mixed_precision_trains_and_saves_a_float32_model(learnable_npz, tmp_path):
    from digitlab.compute.backend import keras
    from digitlab.training.fit import train

    run = train(small(learnable_npz, tmp_path, model="fast-convnet", precision="mixed_bfloat16", epochs=4,
                      learning_rate=0.01), verbose=0)
    assert keras().config.dtype_policy().name == "float32"  # the policy in force before is back
    loaded = keras().saving.load_model(run.path / "model.keras")
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    assert run.metrics["test_accuracy"] >= 0.9
    images = np.load(learnable_npz)["x_test"][:50]
    np.testing.assert_allclose(loaded.predict(images, verbose=0), run.model.predict(images, verbose=0), atol=1e-6)


@pytest.mark.parametrize("value, message", [
    (0, "steps_per_execution must be a positive number, got 0"),
    (2.5, "steps_per_execution must be a whole number, got 2.5"),
])
def test_steps_per_execution_must_be_a_positive_whole_number(value, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        TrainingConfig(steps_per_execution=value).validate()


@pytest.mark.mnist
def test_the_default_recipe_reaches_99_percent_on_mnist_in_two_epochs(mnist_folder, tmp_path):
    from digitlab.training.api import train

    run = train(data=str(mnist_folder), runs_dir=str(tmp_path), verbose=0)
    assert (run.config.recipe, len(run.history)) == ("fast", 2)
    assert run.metrics["test_accuracy"] >= 0.99, run.metrics


@pytest.mark.mnist
def test_one_epoch_on_5000_mnist_images_reaches_90_percent(mnist_folder, tmp_path):
    from digitlab.training.fit import train

    config = resolve("three-conv-batchnorm", overrides={
        "data": str(mnist_folder), "epochs": 1, "train_limit": 5000, "runs_dir": str(tmp_path),
        "deterministic": True})
    run = train(config, verbose=0)
    assert run.metrics["test_accuracy"] >= 0.90, run.metrics


def test_validation_monitor_watches_part_of_the_split_and_reports_on_all_of_it(learnable_npz, tmp_path,
                                                                                 monkeypatch):
    from digitlab.training import pipeline
    from digitlab.training.fit import prepare_data, train

    watched = []
    batches = pipeline.batches

    def recording_batches(dataset, *args, training=True, **kwargs):
        if not training:
            watched.append(len(dataset))
        return batches(dataset, *args, training=training, **kwargs)

    monkeypatch.setattr(pipeline, "batches", recording_batches)
    config = small(learnable_npz, tmp_path, validation=0.3, validation_monitor=40)
    run = train(config, verbose=0)
    assert watched == [40]  # 90 validation images, 40 of them watched epoch by epoch
    validation = prepare_data(config).validation
    assert len(validation) == 90  # and the kept model is reported on all of them
    predicted = run.model.predict(validation.images, verbose=0).argmax(axis=1)
    assert run.metrics["validation_accuracy"] == pytest.approx(np.mean(predicted == validation.labels), abs=1e-6)


@pytest.mark.parametrize("recipe, validation, monitor", [
    ("three-conv-batchnorm", 0, None),  # trains on everything
    ("tiny-convnet", 0.2, None),
    ("locally-connected", 0.2, None),
    ("four-conv-augmented", 0.3, 400),  # and watches 400 of them
    ("five-conv-rmsprop", "mnist:test", None),  # validates on the test set
])
def test_notebook_recipes_validate_as_their_notebooks(recipe, validation, monitor):
    config = resolve(recipe)
    assert (config.validation, config.validation_monitor) == (validation, monitor)


def test_a_limited_training_set_and_its_validation_split_are_named_once(learnable_npz, tmp_path):
    from digitlab.training.fit import prepare_data

    splits = prepare_data(small(learnable_npz, tmp_path, train_limit=100))
    assert (len(splits.train), len(splits.validation)) == (80, 20)
    assert (splits.train.name, splits.validation.name) == ("learnable.npz-train", "learnable.npz-validation")


def test_validating_on_the_test_data_says_so_and_evaluates_it_once(learnable_npz, tmp_path, capsys, monkeypatch):
    from digitlab.evaluation import calibration
    from digitlab.training.fit import prepare_data, train

    assert not prepare_data(small(learnable_npz, tmp_path)).test_is_validation
    config = small(learnable_npz, tmp_path, validation=f"{learnable_npz}:test", epochs=1)
    assert prepare_data(config).test_is_validation

    model_runs = []
    logits = calibration.logits
    monkeypatch.setattr(calibration, "logits", lambda model, images, *rest, **options: model_runs.append(len(images))
                        or logits(model, images, *rest, **options))
    run = train(config, verbose=0)
    assert "note: the validation data is the test data" in " ".join(capsys.readouterr().err.split())
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["test_is_validation"] is True
    assert metrics["test_accuracy"] == metrics["validation_accuracy"]
    # One pass of the model over the one set gives the figures before and after calibration.
    assert len(model_runs) == 1
    assert "test, which is the validation data" in (run.path / "report.html").read_text()


def test_choices_are_matched_ignoring_case_from_flags_files_and_recipes(tmp_path):
    config = resolve("Keras-Example", overrides={"optimizer": "RMSprop", "schedule": "One_Cycle",
                                                "precision": "Mixed_BFloat16", "checkpoint_monitor": "VAL_LOSS"})
    assert (config.recipe, config.optimizer, config.schedule) == ("keras-example", "rmsprop", "one-cycle")
    assert (config.precision, config.checkpoint_monitor) == ("mixed_bfloat16", "val_loss")
    config_file = tmp_path / "mine.toml"
    config_file.write_text('optimizer = "SGD"\nplateau_monitor = "Val_Accuracy"\n')
    config = resolve(config_file=config_file)
    assert (config.optimizer, config.plateau_monitor) == ("sgd", "val_accuracy")


@pytest.mark.parametrize("settings, message", [
    ({"optimizer": "rmsprp"}, r"optimizer = 'rmsprp' is not one of adam, adamw, rmsprop, sgd; "
                              r"did you mean 'rmsprop'\?$"),
    ({"precision": "bfloat16"}, r"; did you mean 'mixed_bfloat16'\?$"),
    ({"checkpoint_monitor": "val_los"}, r"checkpoint_monitor = 'val_los' is not a metric training logs; choose one "
                                        r"of loss, accuracy, val_loss, val_accuracy; did you mean 'val_loss'\?$"),
])
def test_an_unknown_choice_suggests_the_nearest(settings, message):
    with pytest.raises(ConfigError, match=message):
        resolve(overrides=settings)


def test_model_names_are_matched_ignoring_case_and_misspelt_ones_get_a_suggestion():
    from digitlab.training.fit import known_model

    assert known_model(resolve(overrides={"model": "Tiny-ConvNet"})).model == "tiny-convnet"
    with pytest.raises(ConfigError, match=r"unknown model 'tiny-convnt'; known models: .*; "
                                          r"did you mean 'tiny-convnet'\?$"):
        known_model(resolve(overrides={"model": "tiny-convnt"}))


def test_a_misspelt_recipe_gets_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown recipe 'keras-exampel'; recipes: .*; "
                                          r"did you mean 'keras-example'\?$"):
        resolve("keras-exampel")
