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


def _root():
    """The folder of the shipped files (the installed package's own)."""
    return resources.files(__name__)


def available() -> list[str]:
    return sorted(p.name[: -len(".json")] for p in _root().iterdir() if p.name.endswith(".json"))


class CorruptPretrained(ValueError):
    """A shipped learner's files exist but cannot be read, or hold non-finite numbers."""


def _corrupt(path, why: str) -> CorruptPretrained:
    return CorruptPretrained(
        f"shipped learner file {path} {why}; the installed copy is damaged: reinstall "
        f"vsml-jax (pip install --force-reinstall), or in a git checkout: git checkout -- {path}"
    )


def _read(name: str) -> tuple[dict, dict]:
    """The model card and the arrays of ``name``, checked: readable and finite."""
    root = _root()
    card_path, npz_path = root / f"{name}.json", root / f"{name}.npz"
    try:
        card = json.loads(card_path.read_text())
        for key in ("config", "task"):
            if not isinstance(card.get(key), dict):
                raise ValueError(f"no {key!r} mapping")
    except (OSError, UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise _corrupt(card_path, f"is not a valid model card ({type(e).__name__}: {e})") from None
    try:
        with npz_path.open("rb") as f:
            arrays = dict(np.load(f))
    except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, OSError, ValueError, ...
        raise _corrupt(npz_path, f"cannot be read ({type(e).__name__}: {e})") from None
    if "mean" not in arrays:
        raise _corrupt(npz_path, "has no 'mean' array")
    for key, value in arrays.items():
        if np.issubdtype(value.dtype, np.inexact) and not np.isfinite(value).all():
            bad = int((~np.isfinite(value)).sum())
            raise _corrupt(npz_path, f"holds {bad} non-finite values in {key!r}")
    return card, arrays


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
    card, arrays = _read(name)
    try:
        cfg = from_dict(RunConfig, card["config"])
        learner = build_learner(cfg)
        meta_params = unravel_meta_params(learner, TaskSpec(**card["task"]), arrays.pop("mean"))
    except (TypeError, ValueError) as e:  # ConfigError is a ValueError
        raise _corrupt(_root() / f"{name}.json", f"does not fit its arrays ({e})") from None
    return Pretrained(name, cfg, learner, meta_params, card, arrays)


# The small fixed episode set a card's ``check`` records (with the mean accuracy on it and
# a 95% interval), written by experiments.ship_pretrained and reproduced by the tests.
CHECK = {"dataset": "mnist", "episodes": 8, "steps": 150, "seed": 0}


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
