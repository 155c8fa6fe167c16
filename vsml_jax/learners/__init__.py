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


def check_learner_config(name: str, args: dict) -> None:
    """A run config's ``learner`` and ``learner_args``: ``name`` must be in
    :data:`LEARNERS`, and each of ``args`` a keyword its factory accepts, of the type its
    annotation names; integer sizes whose default is positive (``hidden``,
    ``memory_size``, ...) must be >= 1. Raises :class:`~vsml_jax.config.ConfigError`."""
    import collections.abc
    import typing

    from vsml_jax.config import ConfigError, convert_value

    if name not in LEARNERS:
        raise ConfigError(f"unknown learner {name!r}; choose one of {', '.join(sorted(LEARNERS))}")
    if name == "vsml":
        if args:
            raise ConfigError("learner_args do not apply to vsml; configure it under network")
        return
    try:
        check_kwargs(name, args)
    except ValueError as e:
        raise ConfigError(f"learner_args: {e}") from None
    factory = LEARNERS[name]
    hints = typing.get_type_hints(factory)
    params = inspect.signature(factory).parameters
    for key, value in args.items():
        if key not in hints or key not in params:
            continue
        tp, default = hints[key], params[key].default
        if typing.get_origin(tp) is collections.abc.Sequence:
            tp = tuple[typing.get_args(tp)[0], ...]
        try:
            converted = convert_value(value, tp, f"learner_args.{key}")
        except ConfigError as e:
            raise ConfigError(f"{e} (learner {name})") from None
        args[key] = converted  # e.g. lr '1e-3' (a string to YAML) -> 0.001
        ints = converted if isinstance(converted, tuple) else (converted,)
        positive = default != () and all(
            isinstance(d, int) and d >= 1
            for d in (default if isinstance(default, tuple) else (default,))
        )
        if positive and any(isinstance(v, int) and not isinstance(v, bool) and v < 1 for v in ints):
            raise ConfigError(f"learner_args.{key} must be >= 1, got {value!r} (learner {name})")


def make_learner(name: str, **kwargs) -> Learner:
    """Build the learner ``name`` from :data:`LEARNERS` with keyword hyperparameters.

    Raises:
      ValueError: for an unknown learner name or a keyword its factory does not accept.
    """
    check_kwargs(name, kwargs)
    return LEARNERS[name](**kwargs)


__all__ = [
    "LEARNERS",
    "Feedback",
    "Learner",
    "TaskSpec",
    "check_kwargs",
    "check_learner_config",
    "make_learner",
]
