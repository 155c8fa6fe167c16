"""Typed run configuration: frozen dataclasses, YAML presets and ``--set`` overrides.

A config is built from a preset (a YAML file mirroring the dataclass tree) and
``key.path=value`` overrides whose values are parsed as YAML. Unknown keys and
values of the wrong type raise :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from vsml_jax.vsml.cell import CellConfig
from vsml_jax.vsml.network import NetworkConfig


class ConfigError(ValueError):
    """A bad configuration key or value."""


# learners without meta-parameters: evaluated as they are (sgd/adam with a tuned lr)
HAND_DESIGNED = ("sgd", "adam", "ncm", "knn", "1nn")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which data the meta-training episodes come from and how they are shaped."""

    train_sets: tuple[str, ...] = ("mnist",)
    data_dir: str | None = None
    image_size: tuple[int, int] | None = None  # resize (h, w); None keeps the native size
    grey: bool = False
    classes: tuple[int, ...] | None = None  # keep these classes, relabelled 0..k-1
    max_classes: int | None = None  # or keep the first k classes (e.g. of Omniglot)
    input_dim: int | None = 32  # A: the learner's input size; None = all pixels
    num_classes: int = 10
    projection_prob: float = 1.0  # share of tasks with a fresh random projection
    permute_pixels: bool = False
    permute_labels: bool = False
    episode_length: int = 100
    # N-way K-shot episodes (vsml_jax.data.fewshot) instead: N = ways (= num_classes),
    # K = shots, then `queries` query examples (episode_length is unused: T = N * K + queries)
    ways: int | None = None
    shots: int = 1
    queries: int = 1
    fitness_steps: str = "all"  # few-shot meta-loss over 'all' steps or only the 'queries'


@dataclasses.dataclass(frozen=True)
class ESConfig:
    """OpenAI-ES (or another evosax strategy) over the meta-parameters."""

    # Open_ES uses sigma, lr (Adam) and antithetic pairs; any other distribution-based
    # evosax strategy named here runs with its own default hyperparameters
    strategy: str = "Open_ES"
    population_pairs: int = 64  # antithetic pairs; population = 2 * pairs
    sigma: float = 0.05
    lr: float = 0.025
    fitness_shaping: str = "identity"  # identity | centered_rank | standardize | normalize
    generations: int = 2000
    generations_per_call: int = 10  # generations scanned inside one jitted call
    # members one device evaluates at once; 0 = the platform's choice (CPU: 1, since a
    # member's state then stays in cache; accelerators: all of them in one vmap)
    eval_batch: int = 0

    @property
    def population_size(self) -> int:
        return 2 * self.population_pairs


@dataclasses.dataclass(frozen=True)
class CurriculumStage:
    """Meta-gradient steps before ``until`` draw easier tasks: of ``classes`` classes (one
    count per task, drawn from the list; random classes, relabelled in random order)
    and/or with a fresh random projection only with probability ``projection_prob`` (the
    other tasks share one fixed projection, so their input-label map can be memorised).
    Unset fields keep the run's ``data.*`` setting."""

    until: int
    classes: tuple[int, ...] | None = None
    projection_prob: float | None = None

    def __post_init__(self):
        if self.until < 1 or (
            self.classes is not None and (not self.classes or min(self.classes) < 1)
        ):
            raise ConfigError(
                f"a curriculum stage needs until >= 1 and class counts >= 1, got {self}"
            )
        if self.projection_prob is not None and not 0.0 <= self.projection_prob <= 1.0:
            raise ConfigError(f"curriculum projection_prob must be in [0, 1], got {self}")

    def spec(self, spec):
        """The run's episode spec ``spec`` made this stage's."""
        changes = {}
        if self.classes is not None:
            changes["class_subset_sizes"] = tuple(self.classes)
        if self.projection_prob is not None:
            changes.update(projection_prob=self.projection_prob, fixed_projection=True)
        return dataclasses.replace(spec, **changes)


@dataclasses.dataclass(frozen=True)
class GradConfig:
    """Meta-gradients by backprop through the unrolled episodes (``trainer: grad``)."""

    lr: float = 1e-3  # Adam
    batch_size: int = 16  # episodes per meta-step
    clip_norm: float = 1.0  # global gradient-norm clipping (0 = off)
    remat: bool = True  # jax.checkpoint each learner step: memory O(T * state), not activations
    steps: int = 2000  # meta-gradient steps
    steps_per_call: int = 10  # steps scanned inside one jitted call
    # > 0: relative steps, each parameter moves by about lr * (|its initial value| +
    # relative_floor) (meta/grad.py scale_by_initial_magnitude); for init_from V_Ms whose
    # entries span many magnitudes, such as the constructed backprop clone
    relative_floor: float = 0.0
    # easier tasks first, e.g. [{until: 500, classes: [2, 3, 4, 5]}]: stages with
    # increasing `until`; from the last `until` on, the configured tasks (data.*)
    curriculum: tuple[CurriculumStage, ...] = ()

    def __post_init__(self):
        ends = [c.until for c in self.curriculum]
        if ends != sorted(set(ends)):
            raise ConfigError(f"grad.curriculum stages need increasing `until`, got {ends}")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Meta-test: online episodes on test splits with the ES mean, against baselines."""

    every: int = 500  # generations; 0 = only at the end
    datasets: tuple[str, ...] = ("mnist", "fashion_mnist")
    split: str = "test"
    episode_length: int = 2000
    num_episodes: int = 16
    # hand-designed; sgd/adam lr-tuned, ncm, knn (k=5) and 1nn parameter-free
    baselines: tuple[str, ...] = ("sgd", "adam", "ncm", "knn", "1nn")
    baseline_hidden: tuple[int, ...] = (160,)
    baseline_lrs: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a meta-training run needs."""

    name: str = "es_mnist"
    seed: int = 0
    out_dir: str = "runs"
    checkpoint_every: int = 100  # generations
    keep_checkpoints: int = 3
    distributed: bool = False  # call jax.distributed.initialize() (also: $VSML_DISTRIBUTED=1)
    distributed_heartbeat_timeout_s: int = 20  # a process silent this long is dead: all exit
    distributed_init_timeout_s: int = 60  # every process must join within this
    cpu_devices: int = 0  # CPU backend only: XLA devices to split the host into (0 = per core)
    max_skipped: int = 10  # stop after this many consecutive skipped (non-finite) updates
    tensorboard: bool = True
    trainer: str = "es"  # es (evolution strategies: es.*) | grad (meta-gradients: grad.*)
    learner: str = "vsml"  # any name of vsml_jax.learners.LEARNERS
    learner_args: dict = dataclasses.field(default_factory=dict)  # its factory's kwargs
    init_from: str | None = None  # a run dir (or pretrained:NAME): start from its meta-params
    network: NetworkConfig = NetworkConfig()  # the VSML learner's architecture
    data: DataConfig = DataConfig()
    es: ESConfig = ESConfig()
    grad: GradConfig = GradConfig()
    eval: EvalConfig = EvalConfig()

    def __post_init__(self):
        if self.trainer not in ("es", "grad"):
            raise ConfigError(f"trainer must be 'es' or 'grad', got {self.trainer!r}")
        _check_baselines(self)
        for key, value in (
            ("es.population_pairs", self.es.population_pairs),
            ("es.generations_per_call", self.es.generations_per_call),
            ("es.generations", self.es.generations),
            ("checkpoint_every", self.checkpoint_every),
            ("keep_checkpoints", self.keep_checkpoints),
            ("data.episode_length", self.data.episode_length),
            ("eval.episode_length", self.eval.episode_length),
            ("eval.num_episodes", self.eval.num_episodes),
            ("grad.batch_size", self.grad.batch_size),
            ("grad.steps", self.grad.steps),
            ("grad.steps_per_call", self.grad.steps_per_call),
            ("max_skipped", self.max_skipped),
            ("distributed_heartbeat_timeout_s", self.distributed_heartbeat_timeout_s),
            ("distributed_init_timeout_s", self.distributed_init_timeout_s),
        ):
            if value < 1:
                raise ConfigError(f"{key} must be >= 1, got {value}")
        if self.es.eval_batch < 0:
            raise ConfigError(
                f"es.eval_batch must be >= 0 (0 = the platform's choice), got {self.es.eval_batch}"
            )
        if self.cpu_devices < 0:
            raise ConfigError(
                f"cpu_devices must be >= 0 (0 = one per core), got {self.cpu_devices}"
            )
        for key, value in (
            ("es.sigma", self.es.sigma),
            ("es.lr", self.es.lr),
            ("grad.lr", self.grad.lr),
        ):
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{key} must be a finite number > 0, got {value}")
        if not math.isfinite(self.grad.relative_floor) or self.grad.relative_floor < 0:
            raise ConfigError(
                "grad.relative_floor must be a finite number >= 0 (0 = plain Adam steps), "
                f"got {self.grad.relative_floor}"
            )
        if self.eval.every < 0:
            raise ConfigError(f"eval.every must be >= 0, got {self.eval.every}")
        if not 0.0 <= self.data.projection_prob <= 1.0:
            raise ConfigError(
                f"data.projection_prob must be in [0, 1], got {self.data.projection_prob}"
            )
        if self.data.ways is not None:
            from vsml_jax.data.fewshot import FewShotSpec

            try:
                d = self.data
                FewShotSpec(d.ways, d.shots, d.queries, fitness_steps=d.fitness_steps)
            except ValueError as e:
                raise ConfigError(f"data: {e}") from None
            if self.data.num_classes != self.data.ways:
                raise ConfigError(
                    f"data.ways={self.data.ways} needs data.num_classes={self.data.ways} "
                    f"(the learner's outputs), got {self.data.num_classes}"
                )
        if self.data.classes is not None and self.data.max_classes is not None:
            raise ConfigError("set at most one of data.classes and data.max_classes")
        steps, per_call, what = self.schedule
        if steps % per_call:
            raise ConfigError(
                f"{what}s ({steps}) must be a multiple of {what}s_per_call ({per_call})"
            )
        for key, every in (
            ("checkpoint_every", self.checkpoint_every),
            ("eval.every", self.eval.every),
        ):
            if every % per_call:
                raise ConfigError(
                    f"{key} ({every}) must be a multiple of {what}s_per_call ({per_call})"
                )

    @property
    def schedule(self) -> tuple[int, int, str]:
        """``(steps, steps per jitted call, what a step is)`` of the configured trainer:
        ES generations or meta-gradient steps (``es.generation`` / ``grad.step``)."""
        if self.trainer == "es":
            return self.es.generations, self.es.generations_per_call, "es.generation"
        return self.grad.steps, self.grad.steps_per_call, "grad.step"


def _check_baselines(cfg: RunConfig) -> None:
    unknown = sorted(set(cfg.eval.baselines) - set(HAND_DESIGNED))
    if unknown:
        raise ConfigError(
            f"eval.baselines {unknown} are not hand-designed learners; "
            f"choose from {', '.join(HAND_DESIGNED)}"
        )


# --------------------------------------------------------------------------- parsing


def convert_value(value: Any, tp: Any, key: str) -> Any:
    """Check/convert a YAML value to the annotated type ``tp`` (ConfigError naming ``key``)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert_value(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            value = [value]
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert_value(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {value!r}")
        return tuple(convert_value(v, a, key) for v, a in zip(value, args))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        # YAML 1.1 reads 1e-3 and 1e30 (no dot, or no exponent sign) as strings: a number
        # is whatever Python's float() parses; infinities and NaN are refused here
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass ``cls`` from a (possibly partial) nested dict."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(data) - names))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]!s}; valid keys under "
            f"{prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(names))}"
        )
    kwargs = {k: convert_value(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {e}") from None


def to_dict(cfg) -> dict:
    """A plain, YAML-serialisable dict of a config."""

    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def set_path(tree: dict, dotted: str, value: Any):
    *parents, leaf = dotted.split(".")
    node = tree
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {p} is not a section")
    node[leaf] = value


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a mapping with the same key twice."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {line})", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def safe_load(text: str):
    """``yaml.safe_load`` that also rejects duplicate keys."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set expects key.path=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        msg = str(e).splitlines()[0]
        raise ConfigError(f"--set {key}: cannot parse {raw!r} ({msg})") from None
    return key.strip(), value


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config preset {path} does not exist or is not a file")
    try:
        tree = safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        msg = str(e).splitlines()[0]
        raise ConfigError(f"config preset {path} is not valid YAML: {msg}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config preset {path} must be a YAML mapping")
    return tree


def _merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``, recursively for nested mappings."""
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(
    preset: str | Path | None = None,
    overrides: list[str] = (),
    cls=RunConfig,
    defaults: str | Path | None = None,
):
    """Dataclass defaults <- ``defaults`` preset <- ``preset`` <- ``key=value`` overrides,
    validated into ``cls``. Nested sections merge, so a preset may set only a few keys."""
    tree: dict = {}
    if defaults is not None:
        tree = _read_yaml(Path(defaults))
    if preset is not None:
        tree = _merge(tree, _read_yaml(Path(preset)))
    for text in overrides:
        set_path(tree, *parse_override(text))
    return from_dict(cls, tree)


__all__ = [
    "CellConfig",
    "ConfigError",
    "DataConfig",
    "ESConfig",
    "EvalConfig",
    "GradConfig",
    "NetworkConfig",
    "RunConfig",
    "from_dict",
    "load_config",
    "to_dict",
]
