"""What a :class:`~vsml_jax.config.RunConfig` names, built: its learner, data and keys.

Everything a meta-trainer, a meta-test or a shipped learner needs to turn a config into
objects lives here, so none of them reaches into another's module for it.
"""

from __future__ import annotations

import logging
import zlib

import jax
import numpy as np

from vsml_jax.config import ConfigError, RunConfig, load_config
from vsml_jax.data import load_split, to_device
from vsml_jax.data.episodes import DeviceDataset, EpisodeSpec
from vsml_jax.data.fewshot import FewShotSpec
from vsml_jax.data.preprocess import filter_classes
from vsml_jax.learners.base import Learner, PyTree, TaskSpec
from vsml_jax.runtime.devices import replicate

log = logging.getLogger(__name__)


def run_key(seed: int, purpose: str) -> jax.Array:
    """An independent PRNG key per (seed, purpose): no two purposes or seeds collide."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(purpose.encode()) & 0x7FFFFFFF)


def check_names(cfg) -> None:
    """The names a config takes from other modules' registries, checked by their owners:
    the learner and its ``learner_args`` (:mod:`vsml_jax.learners`), the ES fitness
    shaping (:mod:`vsml_jax.meta.es`) and the episodes (``data``'s episode fields:
    :func:`episode_spec`'s EpisodeSpec or few-shot FewShotSpec), for
    ``cfg`` and every RunConfig inside it (an experiment's ``base``). Raises ConfigError."""
    import dataclasses

    from vsml_jax.learners import check_learner_config
    from vsml_jax.meta.es import check_fitness_shaping

    if isinstance(cfg, RunConfig):
        check_learner_config(cfg.learner, cfg.learner_args)
        try:
            check_fitness_shaping(cfg.es.fitness_shaping)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        try:
            episode_spec(cfg, cfg.data.episode_length)
        except ValueError as e:
            raise ConfigError(f"data: {e}") from None
    elif dataclasses.is_dataclass(cfg):
        for field in dataclasses.fields(cfg):
            check_names(getattr(cfg, field.name))


def load_run_config(preset=None, overrides=(), cls=RunConfig, defaults=None):
    """:func:`vsml_jax.config.load_config` with the names checked (:func:`check_names`):
    what every command loads its config with."""
    cfg = load_config(preset, overrides, cls=cls, defaults=defaults)
    check_names(cfg)
    return cfg


def build_learner(cfg: RunConfig) -> Learner:
    """VSML from ``cfg.network``; any other learner by name with ``cfg.learner_args``."""
    from vsml_jax.learners import make_learner
    from vsml_jax.learners.vsml import vsml

    if cfg.learner == "vsml":
        return vsml(cfg.network)
    return make_learner(cfg.learner, **cfg.learner_args)


def episode_spec(cfg: RunConfig, length: int) -> EpisodeSpec | FewShotSpec:
    """The episodes of ``cfg`` with ``length`` steps, or its N-way K-shot episodes
    (``data.ways`` set; their length is ``ways * shots + queries``)."""
    d = cfg.data
    if d.ways is not None:
        return FewShotSpec(
            d.ways, d.shots, d.queries, d.input_dim, d.projection_prob, d.fitness_steps
        )
    return EpisodeSpec(
        length=length,
        input_dim=d.input_dim,
        num_classes=d.num_classes,
        projection_prob=d.projection_prob,
        permute_pixels=d.permute_pixels,
        permute_labels=d.permute_labels,
        early_steps=d.early_steps,
        early_weight=d.early_weight,
        input_gain=d.input_gain,
        class_gain=d.class_gain,
    )


def load_arrays(cfg: RunConfig, names, split: str):
    """Host arrays of ``names``, with the configured class filter applied."""
    d = cfg.data
    arrays = [load_split(n, split, data_dir=d.data_dir) for n in names]
    if d.classes is not None or d.max_classes is not None:
        arrays = [filter_classes(a, d.classes, max_classes=d.max_classes) for a in arrays]
    elif d.ways is not None:  # few-shot: the classes present, relabelled 0..k-1
        arrays = [filter_classes(a, np.unique(a.labels)) for a in arrays]
    if d.ways is not None:
        for a in arrays:
            episode_spec(cfg, 0).check_counts(a.labels)
    return arrays


def load_data(cfg: RunConfig, names, split: str, mesh) -> DeviceDataset:
    """Load, preprocess and place ``names`` (one mixture) on every device of ``mesh``."""
    return place_data(cfg, load_arrays(cfg, names, split), mesh)


def place_data(cfg: RunConfig, arrays, mesh) -> DeviceDataset:
    """Check, preprocess and place host arrays (one mixture) on every device of ``mesh``."""
    d = cfg.data
    for a in arrays:
        log.info("data %s/%s: %s, %d examples", a.name, a.split, a.source, len(a.labels))
        if a.num_classes > d.num_classes and d.ways is None:  # few-shot: a pool of classes
            raise ValueError(
                f"dataset {a.name} has {a.num_classes} classes but data.num_classes is "
                f"{d.num_classes}; raise data.num_classes"
            )
    data = to_device(arrays, image_size=d.image_size, grey=d.grey)
    return replicate(data, mesh, readonly=True)


def task_spec(cfg: RunConfig, data: DeviceDataset) -> TaskSpec:
    input_dim = cfg.data.input_dim or int(np.prod(data.input_shape))
    return TaskSpec(input_dim=input_dim, num_classes=cfg.data.num_classes)


def unravel_meta_params(learner: Learner, task: TaskSpec, flat) -> PyTree:
    """The meta-parameter pytree of ``learner`` on ``task`` from its flat vector ``flat``
    (as checkpoints and shipped learners store it), as uncommitted arrays usable with
    data on any devices."""
    from jax.flatten_util import ravel_pytree

    like = jax.eval_shape(lambda k: learner.meta_init(k, task), jax.random.PRNGKey(0))
    _, unravel = ravel_pytree(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), like))
    flat = np.asarray(flat)
    size = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(like))
    if flat.shape != (size,):
        raise ValueError(
            f"{flat.size} stored meta-parameters do not fit learner {learner.name!r} on "
            f"{task} ({size} expected); the config does not match the parameters"
        )
    return unravel(jax.numpy.asarray(flat))
