"""The interface both meta-trainers implement, and the choice between them.

A :class:`Trainer` is three pure functions, in the style of an optax transform:
``init(meta_params, key) -> state``, ``block(state, base_key, start, *args) -> (state,
metrics)`` running ``steps_per_block`` steps in one program (step ``g`` uses
``fold_in(base_key, g)``; ``args`` are the trainer's ``args``, e.g. the dataset, passed in
so that they are inputs of the compiled program rather than constants baked into it),
and ``mean(state) -> meta_params``. The state is a pytree that checkpoints, jit and
sharding handle; ``metrics`` holds one row per step, with ``meta_loss`` and ``skipped``
(1 where a non-finite update was rejected) in every trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from vsml_jax.config import RunConfig
from vsml_jax.data.episodes import DeviceDataset, EpisodeSpec
from vsml_jax.learners.base import Learner, PyTree


class Trainer(NamedTuple):
    init: Callable[[PyTree, Any], Any]  # (meta_params, key) -> state
    block: Callable[..., tuple[Any, dict]]  # (state, base_key, start, *args)
    mean: Callable[[Any], PyTree]  # state -> meta_params
    steps_per_block: int
    args: tuple = ()


def make_trainer(
    cfg: RunConfig, learner: Learner, like: PyTree, data: DeviceDataset, spec: EpisodeSpec, mesh
) -> Trainer:
    """The trainer ``cfg.trainer`` names: ES (``cfg.es``, population sharded over ``mesh``)
    or meta-gradients (``cfg.grad``, episode batch sharded over ``mesh``). ``like`` is a
    meta-parameter pytree of the right structure."""
    num_classes = cfg.data.num_classes
    if cfg.trainer == "es":
        from vsml_jax.meta import es

        return es.es_trainer(cfg.es, learner, like, data, spec, num_classes, mesh)
    from vsml_jax.meta import grad

    curriculum = tuple((c.until, c.spec(spec)) for c in cfg.grad.curriculum)
    return grad.grad_trainer(cfg.grad, learner, data, spec, num_classes, mesh, curriculum)
