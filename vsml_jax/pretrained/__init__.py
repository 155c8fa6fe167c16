"""Meta-learned learners shipped with the package: meta-parameters plus a model card.

Each entry ``NAME`` is ``NAME.npz`` (the flat meta-parameters ``mean`` and, for a clone,
its ``readout``) and ``NAME.json`` (the model card: the run config, the command that
produced it, the code version and its measured meta-test numbers).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
from jax.flatten_util import ravel_pytree


class Pretrained(NamedTuple):
    name: str
    config: object  # vsml_jax.config.RunConfig
    learner: object  # vsml_jax.learners.base.Learner
    meta_params: object
    card: dict
    arrays: dict  # everything stored beside ``mean`` (e.g. a clone's ``readout``)


def available() -> list[str]:
    return sorted(
        p.name[: -len(".json")]
        for p in resources.files(__name__).iterdir()
        if p.name.endswith(".json")
    )


def save(path: Path, cfg, task, meta_params, card: dict, **arrays) -> None:
    """Write ``path.npz`` / ``path.json`` for a learner (used to add shipped learners)."""
    from vsml_jax.config import to_dict

    flat, _ = ravel_pytree(meta_params)
    np.savez(
        path.with_suffix(".npz"),
        mean=np.asarray(flat),
        **{k: np.asarray(v) for k, v in arrays.items()},
    )
    card = {
        **card,
        "config": to_dict(cfg),
        "task": {"input_dim": task.input_dim, "num_classes": task.num_classes},
    }
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")


def load(name: str) -> Pretrained:
    """The shipped learner ``name`` (see :func:`available`)."""
    from vsml_jax.build import build_learner, unravel_meta_params
    from vsml_jax.config import RunConfig, from_dict
    from vsml_jax.learners.base import TaskSpec

    names = available()
    if name not in names:
        raise FileNotFoundError(f"no shipped learner {name!r}; available: {', '.join(names)}")
    root = resources.files(__name__)
    card = json.loads((root / f"{name}.json").read_text())
    with (root / f"{name}.npz").open("rb") as f:
        arrays = dict(np.load(f))
    cfg = from_dict(RunConfig, card["config"])
    learner = build_learner(cfg)
    try:
        meta_params = unravel_meta_params(learner, TaskSpec(**card["task"]), arrays.pop("mean"))
    except ValueError as e:
        raise ValueError(f"shipped learner {name!r}: {e}") from None
    return Pretrained(name, cfg, learner, meta_params, card, arrays)


def check_accuracy(p: Pretrained) -> np.ndarray:
    """Per-episode mean online accuracy ``[episodes]`` of ``p`` on the small fixed episode
    set its card's ``check`` names (a test split, episode count and length, seed)."""
    import dataclasses

    from vsml_jax.build import episode_spec, load_data
    from vsml_jax.evaluation import evaluate
    from vsml_jax.runtime.devices import population_mesh

    check = p.card["check"]
    cfg = dataclasses.replace(p.config, data=dataclasses.replace(p.config.data, data_dir=None))
    data = load_data(cfg, [check["dataset"]], "test", population_mesh())
    spec = episode_spec(cfg, check["steps"])
    key = jax.random.PRNGKey(check["seed"])
    acc = evaluate(p.learner, p.meta_params, data, spec, check["episodes"], key).accuracy
    return acc.mean(1)
