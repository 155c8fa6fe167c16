"""Learning algorithms (learners) and their registry.

Every entry of :data:`LEARNERS` is a factory taking keyword hyperparameters and
returning a :class:`~vsml_jax.learners.base.Learner`; :func:`make_learner` builds
one by name. To register another learner add one line, e.g.
``LEARNERS["vsml"] = vsml.<factory>`` (see the marked place below).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from vsml_jax.learners import (
    fw_memory,
    fwp,
    hebbian,
    knn,
    learned_optimizer,
    maml,
    meta_rnn,
    ncm,
    sgd,
    synaptic_rule,
    vsml,
)
from vsml_jax.learners.base import Feedback, Learner, TaskSpec

# Submodules keep their names in this package; the factories are reached through them
# (``vsml_jax.learners.fwp.fwp``) or through the registry.
LEARNERS: dict[str, Callable[..., Learner]] = {
    "sgd": sgd.sgd,
    "adam": sgd.adam,
    "meta_rnn": meta_rnn.meta_rnn,
    "hebbian": hebbian.hebbian,
    "fw_memory": fw_memory.fw_memory,
    "fwp": fwp.fwp,
    "learned_optimizer": learned_optimizer.learned_optimizer,
    "synaptic_rule": synaptic_rule.synaptic_rule,
    "maml": maml.maml,
    "ncm": ncm.ncm,
    "knn": knn.knn,
    "1nn": knn.one_nn,
}

LEARNERS["vsml"] = vsml.vsml  # its NetworkConfig comes from RunConfig.network in training


def check_kwargs(name: str, kwargs: dict) -> None:
    """Raise ValueError unless ``name`` is a learner whose factory accepts ``kwargs``."""
    if name not in LEARNERS:
        raise ValueError(f"Unknown learner {name!r}; available: {', '.join(sorted(LEARNERS))}")
    params = inspect.signature(LEARNERS[name]).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(kwargs) - set(params))
    if unknown and not takes_any:
        accepted = ", ".join(params) or "none"
        raise ValueError(
            f"Unknown hyperparameter(s) {unknown} for learner {name!r}; accepted: {accepted}"
        )


def make_learner(name: str, **kwargs) -> Learner:
    """Build the learner ``name`` from :data:`LEARNERS` with keyword hyperparameters.

    Raises:
      ValueError: for an unknown learner name or a keyword its factory does not accept.
    """
    check_kwargs(name, kwargs)
    return LEARNERS[name](**kwargs)


__all__ = ["LEARNERS", "Feedback", "Learner", "TaskSpec", "check_kwargs", "make_learner"]
