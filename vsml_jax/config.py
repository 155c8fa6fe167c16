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


class ConfigError(ValueError):
    """A bad configuration key or value."""


# learners without meta-parameters: evaluated as they are (sgd/adam with a tuned lr)
HAND_DESIGNED = ("sgd", "adam", "ncm", "knn", "1nn")


# --- the VSML network's architecture (vsml_jax.vsml.cell and vsml_jax.vsml.network use
# these, and re-export CellConfig and NetworkConfig) ---

MATMUL_DTYPES = ("float32", "bfloat16")
# jax's matmul precisions: 'default' lets a TPU multiply float32 operands in one bfloat16
# pass, 'highest' multiplies them as float32 (6 passes); CPUs compute float32 either way
PRECISIONS = ("default", "high", "highest")


@dataclasses.dataclass(frozen=True)
class CellConfig:
    """Sizes and initialisation of the shared sub-LSTM (defaults: the paper's code)."""

    hidden: int = 16
    message: int = 8
    forget_bias: float = 5.0
    input_bias: float = -5.0
    random_cell_fraction: float = 0.5  # leading fraction of the cell state drawn at random
    random_cell_std: float | None = None  # None: 1/sqrt(A), like a weight init (paper's code)
    # each random draw fills this many consecutive units (1: independent units, the paper's);
    # copies let several units hold the same initial value (vsml/backprop.py's cell)
    random_cell_copies: int = 1
    layer_norm: bool = False  # layer norm on outgoing messages (disables the fast path)
    # dtype of the matmul inputs ('float32' or 'bfloat16'); state, gates and accumulation
    # stay float32. bfloat16 pays off only where the hardware multiplies it natively
    # (accelerators, CPUs with AVX-512 BF16 / AMX); see docs/BENCHMARKS.md
    matmul_dtype: str = "float32"
    # precision of every matmul of the network (jax.default_matmul_precision; PRECISIONS)
    precision: str = "highest"

    @property
    def fits_fused_kernel(self) -> bool:
        """Whether network.impl 'fused' can run this cell (its kernel's size and dtype)."""
        return self.hidden == 16 and self.matmul_dtype == "float32"

    def __post_init__(self):
        if self.hidden < 1 or self.message < 1:
            raise ValueError(f"cell.hidden and cell.message must be >= 1, got {self}")
        if self.matmul_dtype not in MATMUL_DTYPES:
            raise ValueError(
                f"cell.matmul_dtype must be one of {', '.join(MATMUL_DTYPES)}, "
                f"got {self.matmul_dtype!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"cell.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if not 0.0 <= self.random_cell_fraction <= 1.0:
            raise ValueError(
                f"cell.random_cell_fraction must be in [0, 1], got {self.random_cell_fraction}"
            )

        if self.random_cell_copies < 1 or self.num_random % self.random_cell_copies:
            raise ValueError(
                f"cell.random_cell_copies ({self.random_cell_copies}) must be >= 1 and divide "
                f"the {self.num_random} randomly initialised units"
            )

    @property
    def num_random(self) -> int:
        return int(round(self.random_cell_fraction * self.hidden))


CONV_BACKWARDS = ("paper", "transpose")  # see vsml_jax.vsml.conv


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Architecture and dynamics of a VSML network."""

    cell: CellConfig = CellConfig()
    hidden_layers: tuple[int, ...] = ()  # sizes between input and output; () is one layer
    num_micro_ticks: int = 2
    output_channel: int = 1
    output_scale: float = 100.0
    feed_label: bool = False
    backward_pass: bool = False
    # with backward_pass: lower layers read, in the bottom-up sweep, the backward messages
    # the top-down sweep left (True, the paper's code) or zeros (False, like backprop's
    # forward pass; what a cloned backprop expects)
    forward_sweep_feedback: bool = True
    share_layers: bool = True  # one V_M for all layers (the paper), else one per layer
    # 'auto' (fast when valid, else direct), 'fast', 'direct', or 'fused': the fast path
    # with its LSTM tick on a CPU kernel (vsml_jax.vsml.kernel; AVX-512 CPUs, opt-in)
    impl: str = "auto"
    # conv VSML layers before the dense ones: output channels per conv layer
    conv_channels: tuple[int, ...] = ()
    conv_kernel: int = 3
    conv_stride: int = 2
    image_shape: tuple[int, int, int] | None = None  # (H, W, C) of the input, for conv
    # conv layers' backward message: 'paper' (the paper's code, masked for stride 2) or
    # 'transpose' (the exact transpose of the forward gather); see vsml_jax.vsml.conv
    conv_backward: str = "paper"

    def __post_init__(self):
        m = self.cell.message
        if self.conv_backward not in CONV_BACKWARDS:
            raise ValueError(
                f"conv_backward must be one of {', '.join(CONV_BACKWARDS)}, "
                f"got {self.conv_backward!r}"
            )
        if self.conv_channels:
            if self.image_shape is None:
                raise ValueError("conv_channels need image_shape (H, W, C) of the input images")
            # the first conv layer's ConvGeometry checks (vsml_jax.vsml.conv), on the
            # fields alone; every later layer's input is then >= 1 in each dimension
            if len(self.image_shape) != 3 or min(self.image_shape) < 1:
                raise ValueError(
                    f"conv in_shape must be (H, W, C) > 0, got {tuple(self.image_shape)}"
                )
            for channels in self.conv_channels:
                if channels < 1 or self.conv_kernel < 1 or self.conv_stride < 1:
                    raise ValueError(
                        "conv out_channels, kernel and stride must be >= 1, got "
                        f"{channels}, {self.conv_kernel}, {self.conv_stride}"
                    )
        if self.num_micro_ticks < 1:
            raise ValueError(f"num_micro_ticks must be >= 1, got {self.num_micro_ticks}")
        if not 0 <= self.output_channel < m:
            raise ValueError(f"output_channel must be in [0, {m}), got {self.output_channel}")
        if self.feed_label and m < 2:
            raise ValueError("feed_label needs cell.message >= 2 (label uses channel 1)")
        if self.impl not in ("auto", "fast", "fused", "direct"):
            raise ValueError(f"impl must be 'auto', 'fast', 'fused' or 'direct', got {self.impl!r}")
        if self.impl in ("fast", "fused") and self.cell.layer_norm:
            raise ValueError(
                f"impl={self.impl!r} is invalid with cell.layer_norm; use 'auto' or 'direct'"
            )
        if self.impl == "fused" and not self.cell.fits_fused_kernel:
            raise ValueError(
                "impl='fused' needs cell.hidden 16 and cell.matmul_dtype float32 (its kernel's); "
                f"got {self.cell.hidden} and {self.cell.matmul_dtype}: use 'auto' or 'fast'"
            )
        if any(s < 1 for s in self.hidden_layers):
            raise ValueError(f"hidden_layers must be positive, got {self.hidden_layers}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which data the meta-training episodes come from and how they are shaped."""

    train_sets: tuple[str, ...] = ("mnist",)  # a task draws one uniformly (k listings: k shares)
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
    # the meta-loss weights each of the first early_steps steps early_weight times
    early_steps: int = 0
    early_weight: float = 1.0
    # per task, standardised inputs times a gain drawn log-uniformly from [lo, hi]
    input_gain: tuple[float, float] | None = None
    # per task, each class's standardised inputs times its own gain from [lo, hi]
    class_gain: tuple[float, float] | None = None
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
        if self.data.ways is not None and self.data.early_steps:
            raise ConfigError(
                "data.early_steps weights online episodes; few-shot episodes (data.ways) "
                "weight their steps with data.fitness_steps"
            )
        for gain in ("input_gain", "class_gain"):
            if self.data.ways is not None and getattr(self.data, gain) is not None:
                raise ConfigError(f"data.{gain} applies to online episodes, not to data.ways")
        # the episode fields (projection_prob, early_*, ways, shots, queries,
        # fitness_steps) are checked by EpisodeSpec / FewShotSpec (build.check_names)
        if self.data.ways is not None:
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
