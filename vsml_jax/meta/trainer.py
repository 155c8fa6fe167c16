"""The choice of meta-trainer a run config names (:class:`~vsml_jax.meta.base.Trainer`)."""

from __future__ import annotations

from vsml_jax.config import RunConfig
from vsml_jax.data.episodes import DeviceDataset, EpisodeSpec
from vsml_jax.learners.base import Learner, PyTree
from vsml_jax.meta.base import Trainer


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
