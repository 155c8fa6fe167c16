"""The interface every meta-trainer implements (:mod:`.es`, :mod:`.grad`).

A :class:`Trainer` is three pure functions, in the style of an optax transform:
``init(meta_params, key) -> state``, ``block(state, base_key, start, *args) -> (state,
metrics)`` running ``steps_per_block`` steps in one program (step ``g`` uses
``fold_in(base_key, g)``; ``args`` are the trainer's ``args``, e.g. the dataset, passed in
so that they are inputs of the compiled program rather than constants baked into it),
and ``mean(state) -> meta_params``. The state is a pytree that checkpoints, jit and
sharding handle; ``metrics`` holds one row per step, with ``meta_loss`` and ``skipped``
(1 where a non-finite update was rejected) in every trainer; ``cross_entropy`` says
whether ``meta_loss`` is an online cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from vsml_jax.learners.base import PyTree


class Trainer(NamedTuple):
    init: Callable[[PyTree, Any], Any]  # (meta_params, key) -> state
    block: Callable[..., tuple[Any, dict]]  # (state, base_key, start, *args)
    mean: Callable[[Any], PyTree]  # state -> meta_params
    steps_per_block: int
    args: tuple = ()
    # meta_loss is a mean cross-entropy (the loop warns when it is far above chance, ln C);
    # False for other objectives, e.g. la_cloning's regression onto backprop
    cross_entropy: bool = True
