"""One training configuration: defaults, recipes (TOML), config files and flags, in that order."""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from digitlab.errors import DigitlabError

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("constant", "exponential", "plateau", "cosine", "one-cycle")
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
DEFAULT_RECIPE = "fast"  # what `digitlab train` trains when given no recipe
# The options that name one of a few values, which are matched ignoring case (see `choose`).
CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "precision": PRECISIONS,
           "plateau_monitor": METRICS, "early_stopping_monitor": METRICS, "checkpoint_monitor": METRICS}


class ConfigError(DigitlabError, ValueError):
    """A recipe, config file or option that cannot be used as it is."""


@dataclass
class Augmentation:
    """On-the-fly random changes to training images (off when all strengths are 0).

    Rotation, zoom and shifts move every image. The other writers' and captures' changes (see
    `digitlab.training.augment`) each change a random `probability` share of the images, each image with
    a random strength up to the option's value.
    """

    rotation: float = 0.0  # degrees, either way
    zoom: float = 0.0  # fraction, in or out
    width_shift: float = 0.0  # fraction of the width
    height_shift: float = 0.0  # fraction of the height
    stroke_width: float = 0.0  # pixels thicker, or up to half as many thinner
    stretch: float = 0.0  # the box toward a square (1: all the way), or its shorter side up to half this narrower
    slant: float = 0.0  # degrees of shear, either way
    elastic: float = 0.0  # pixels: standard deviation of a smooth random displacement
    elastic_smoothness: float = 4.0  # pixels: the displacement field's Gaussian sigma
    low_resolution: float = 0.0  # pixels across the digit's box at the smallest capture (MNIST's: 20)
    binarise: float = 0.0  # thresholded at half the peak, give or take this share of it
    blur: float = 0.0  # pixels: the largest Gaussian sigma
    faint: float = 0.0  # faint, grainy ink: the largest strength, up to 1
    probability: float = 0.5  # share of images each of the changes above is applied to

    @property
    def active(self) -> bool:
        return any(getattr(self, name) for name in AUGMENTATION_RANGES)

    def validate(self) -> None:
        """Refuse a value outside its range, naming the option."""
        for name, (lowest, highest, highest_allowed) in AUGMENTATION_RANGES.items():
            value = getattr(self, name)
            inside = lowest <= value <= highest if highest_allowed else lowest <= value < highest
            if value != 0 and not inside:
                interval = f"[{lowest}, {highest}{']' if highest_allowed else ')'}"
                raise ConfigError(
                    f"augmentation.{name} must be {'0 (off) or in ' if lowest else 'in '}{interval}, got {value}"
                )
        lowest, highest = ELASTIC_SMOOTHNESS_RANGE
        if not lowest <= self.elastic_smoothness <= highest:
            raise ConfigError(
                f"augmentation.elastic_smoothness must be in [{lowest}, {highest}], got {self.elastic_smoothness}"
            )
        if not 0 < self.probability <= 1:
            raise ConfigError(f"augmentation.probability must be in (0, 1], got {self.probability}")


# Each strength's values besides 0 (off): (lowest, highest, whether highest itself is allowed).
AUGMENTATION_RANGES = {
    "rotation": (0, 180, False),
    "zoom": (0, 1, False),
    "width_shift": (0, 1, False),
    "height_shift": (0, 1, False),
    "stroke_width": (0, 6, False),
    "stretch": (0, 1, True),
    "slant": (0, 60, False),
    "elastic": (0, 8, False),
    "low_resolution": (4, 20, False),
    "binarise": (0, 0.5, False),
    "blur": (0, 4, False),
    "faint": (0, 1, True),
}
# Pixels: below 1 the field is noise from pixel to pixel; above 14 (half the image) it only moves the digit.
ELASTIC_SMOOTHNESS_RANGE = (1, 14)


@dataclass
class TrainingConfig:
    """Everything that decides a training run. Saved as config.toml in every run folder."""

    recipe: str = "custom"
    data: str = "mnist"
    validation: float | int | str = 0.1  # fraction, count, or a source of its own
    # watch only the first this-many validation images during training (quicker epochs); the
    # whole split is still evaluated and calibrated on at the end
    validation_monitor: int | None = None
    train_limit: int | None = None  # use a stratified subset of this many training images
    split_seed: int | None = None  # seed of train_limit and the validation split; default: seed
    bootstrap: bool = False  # bagging: train on a same-size sample of the training split, with replacement
    test: str | None = None  # reported only, never used to choose; default: the source's test part
    model: str = "simple-convnet"
    model_options: dict[str, Any] = field(default_factory=dict)
    model_file: str | None = None  # a Python file that registers more models
    epochs: int = 15
    steps_per_epoch: int | None = None  # default: one pass over the training data
    steps_per_execution: int = 1  # training steps per call into TensorFlow; epochs round up to whole calls
    batch_size: int = 128
    # mixed_bfloat16: compute in bfloat16, keep the weights in float32 (CPUs with AMX or AVX512_BF16,
    # recent GPUs); mixed_float16 for older GPUs. The saved model is float32 either way.
    precision: str = "float32"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 1e-4  # adamw only
    schedule: str = "constant"
    decay_rate: float = 0.9  # exponential: learning_rate * decay_rate ** epoch
    plateau_monitor: str = "val_accuracy"
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    min_learning_rate: float = 1e-5
    warmup_fraction: float = 0.25  # one-cycle: share of steps spent rising
    augmentation: Augmentation = field(default_factory=Augmentation)
    label_smoothing: float = 0.0
    early_stopping_patience: int | None = None
    early_stopping_monitor: str = "val_loss"
    keep_best: bool = True  # the saved model is the best epoch by checkpoint_monitor
    checkpoint_monitor: str = "val_loss"
    seed: int = 0
    # bit-identical results from the same seed and data (op determinism, one inter-op thread)
    deterministic: bool = False
    distribute: bool = False  # split each batch over all local accelerators (MirroredStrategy)
    threads: int | None = None  # CPU threads for TensorFlow; default: all cores
    tensorboard: bool = False
    runs_dir: str = "runs"

    def validate(self) -> None:
        """Refuse values that would fail late or, worse, silently do nothing."""
        for name in ("optimizer", "schedule", "precision"):
            choose(name, getattr(self, name), CHOICES[name])
        for name in ("plateau_monitor", "early_stopping_monitor", "checkpoint_monitor"):
            value = getattr(self, name)
            if value not in METRICS:
                keras_name = value in ("val_acc", "acc")
                hint = " (Keras 3 logs it as 'val_accuracy')" if keras_name else ""
                raise ConfigError(
                    f"{name} = {value!r} is not a metric training logs{hint}; choose one of {', '.join(METRICS)}"
                    f"{'' if keras_name else did_you_mean(value, METRICS)}"
                )
        _positive("epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        _positive("learning_rate", self.learning_rate)
        if self.steps_per_epoch is not None:
            _positive("steps_per_epoch", self.steps_per_epoch)
        _whole_number("steps_per_execution", self.steps_per_execution)
        _positive("steps_per_execution", self.steps_per_execution)
        if isinstance(self.validation, float) and not 0.0 <= self.validation < 1.0:
            raise ConfigError(f"validation fraction must be in [0, 1), got {self.validation}")
        if isinstance(self.validation, int) and not isinstance(self.validation, bool) and self.validation < 0:
            raise ConfigError(f"validation count must not be negative, got {self.validation}")
        if self.validation_monitor is not None and self.validation_monitor < 1:
            raise ConfigError(f"validation_monitor must be a positive count, got {self.validation_monitor}")
        if self.train_limit is not None:
            _positive("train_limit", self.train_limit)
        if self.threads is not None:
            _positive("threads", self.threads)
        if self.early_stopping_patience is not None:
            _positive("early_stopping_patience", self.early_stopping_patience)
        if self.split_seed is not None:
            _whole_number("split_seed", self.split_seed)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 < self.decay_rate <= 1.0:
            raise ConfigError(f"decay_rate must be in (0, 1], got {self.decay_rate}")
        if not 0.0 < self.plateau_factor < 1.0:
            raise ConfigError(f"plateau_factor must be in (0, 1), got {self.plateau_factor}")
        self.augmentation.validate()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _choice_key(text: str) -> str:
    return text.casefold().replace("_", "-")


def spelled_as_allowed(value: Any, allowed: Sequence[str]) -> Any:
    """`value` as `allowed` spells it when it is one of them but for case, or `-` for `_`
    ("RMSprop" is "rmsprop", "one_cycle" "one-cycle"), and only one matches; else `value`."""
    if not isinstance(value, str) or value in allowed:
        return value
    matches = [option for option in allowed if _choice_key(option) == _choice_key(value)]
    return matches[0] if len(matches) == 1 else value


def did_you_mean(value: Any, allowed: Sequence[str]) -> str:
    """"; did you mean 'adam'?" for the value in `allowed` nearest to `value`, or "" if none is near."""
    keys = {_choice_key(option): option for option in allowed}
    close = difflib.get_close_matches(_choice_key(str(value)), keys, n=1)
    return f"; did you mean {keys[close[0]]!r}?" if close else ""


def choose(name: str, value: Any, allowed: Sequence[str]) -> str:
    """`value` as `allowed` spells it (see `spelled_as_allowed`); one that is not among them is a
    ConfigError naming option `name`, the choices and the nearest."""
    chosen = spelled_as_allowed(value, allowed)
    if chosen not in allowed:
        raise ConfigError(f"{name} = {value!r} is not one of {', '.join(allowed)}{did_you_mean(value, allowed)}")
    return chosen


def _whole_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


_DEFAULTS = TrainingConfig()
_FIELD_TYPES = {item.name: item for item in fields(TrainingConfig)}
_AUGMENTATION_FIELDS = {item.name for item in fields(Augmentation)}
# What a field whose default is None takes when it is set.
_OPTIONAL_TYPES = {
    name: next(kind for kind in typing.get_args(hint) if kind is not type(None))
    for name, hint in typing.get_type_hints(TrainingConfig).items()
    if getattr(_DEFAULTS, name) is None
}


def _checked_value(name: str, value: Any, origin: str) -> Any:
    if name == "validation":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{origin}: validation must be a fraction, a count or a source, got {value!r}")
        return value
    default = getattr(_DEFAULTS, name)
    if default is None:
        expected_type = _OPTIONAL_TYPES[name]
        if not isinstance(value, expected_type) or isinstance(value, bool):
            raise ConfigError(f"{origin}: {name} must be {expected_type.__name__}, got {value!r}")
        return value
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ConfigError(f"{origin}: {name} must be true or false, got {value!r}")
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (int, float, str)) and not isinstance(default, bool) and name != "validation":
        expected = (int, float) if isinstance(default, float) else type(default)
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ConfigError(f"{origin}: {name} must be {type(default).__name__}, got {value!r}")
    return value


def apply(config: TrainingConfig, settings: dict[str, Any], origin: str) -> TrainingConfig:
    """`config` with `settings` laid over it; unknown keys are an error naming `origin`."""
    updates: dict[str, Any] = {}
    for name, value in settings.items():
        if name == "augmentation":
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: augmentation must be a table")
            unknown = set(value) - _AUGMENTATION_FIELDS
            if unknown:
                raise ConfigError(
                    f"{origin}: unknown augmentation key {sorted(unknown)[0]!r}; "
                    f"known: {', '.join(sorted(_AUGMENTATION_FIELDS))}"
                )
            for key, item in value.items():
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    raise ConfigError(f"{origin}: augmentation.{key} must be a number, got {item!r}")
            merged = dataclasses.asdict(config.augmentation) | {key: float(item) for key, item in value.items()}
            updates[name] = Augmentation(**merged)
        elif name == "model_options":
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: model_options must be a table")
            updates[name] = dict(config.model_options) | value
        elif name in _FIELD_TYPES:
            updates[name] = value if value is None else _checked_value(name, value, origin)
            if name in CHOICES:
                updates[name] = spelled_as_allowed(updates[name], CHOICES[name])
        else:
            raise ConfigError(f"{origin}: unknown key {name!r}; known keys: {', '.join(_FIELD_TYPES)}")
    if "model" in settings and "model_options" not in settings and settings["model"] != config.model:
        updates.setdefault("model_options", {})
    return dataclasses.replace(config, **updates)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror or error})") from None


def recipe_names() -> list[str]:
    """The recipes shipped with digitlab."""
    folder = resources.files("digitlab") / "recipes"
    return sorted(item.name.removesuffix(".toml") for item in folder.iterdir() if item.name.endswith(".toml"))


def _is_recipe_file(name: str) -> bool:
    return name.endswith(".toml") or "/" in name


def recipe_name(name: str) -> str:
    """A shipped recipe's name as spelled (matched ignoring case) or a recipe file's path as given;
    an unknown recipe is an error listing the recipes and suggesting the nearest."""
    if _is_recipe_file(name):
        return name
    names = recipe_names()
    chosen = spelled_as_allowed(name, names)
    if chosen not in names:
        raise ConfigError(f"unknown recipe {name!r}; recipes: {', '.join(names)}{did_you_mean(name, names)}")
    return chosen


def recipe_settings(name: str) -> dict[str, Any]:
    """The settings of a shipped recipe, or of a recipe file given by path."""
    if _is_recipe_file(name):
        return read_toml(Path(name))
    resource = resources.files("digitlab") / "recipes" / f"{recipe_name(name)}.toml"
    return tomllib.loads(resource.read_text(encoding="utf-8"))


def resolve(
    recipe: str | None = None, config_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> TrainingConfig:
    """Defaults < recipe < config file < overrides (e.g. command-line flags)."""
    config = TrainingConfig()
    if recipe is not None:
        recipe = recipe_name(recipe)
        settings = recipe_settings(recipe)
        settings.setdefault("recipe", Path(recipe).stem if recipe.endswith(".toml") else recipe)
        config = _validated(apply(config, settings, f"recipe {recipe}"), f"recipe {recipe}")
    if config_file is not None:
        config = _validated(apply(config, read_toml(Path(config_file)), str(config_file)), str(config_file))
    if overrides:
        config = apply(config, {key: value for key, value in overrides.items() if value is not None}, "option")
    config.validate()
    return config


def _validated(config: TrainingConfig, origin: str) -> TrainingConfig:
    """`config` once it passes `validate`; an error names `origin`, the layer that set the bad value."""
    try:
        config.validate()
    except ConfigError as error:
        raise ConfigError(f"{origin}: {error}") from None
    return config


def to_toml(values: dict[str, Any], table: str = "") -> str:
    """A small TOML writer for the settings configs hold: plain values, and tables of them."""
    plain = {key: value for key, value in values.items() if not isinstance(value, dict)}
    tables = {key: value for key, value in values.items() if isinstance(value, dict)}
    lines = [f"[{table}]"] if table else []
    lines += [f"{key} = {_toml_value(value)}" for key, value in plain.items() if value is not None]
    text = "\n".join(lines) + "\n" if lines else ""
    for name, content in tables.items():
        text += ("\n" if text else "") + to_toml(content, f"{table}.{name}" if table else name)
    return text


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def recipe_summary(name: str) -> str:
    """The opening comment of a shipped recipe, up to its first blank comment line: what it is."""
    resource = resources.files("digitlab") / "recipes" / f"{name}.toml"
    comments = []
    for line in resource.read_text(encoding="utf-8").splitlines():
        text = line.lstrip("# ").strip()
        if not line.startswith("#") or not text:
            break
        comments.append(text)
    return " ".join(comments)
