"""Stages of an experiment that keeps its work under one run folder and skips what is
finished, so that ``--resume`` recomputes nothing: what several experiments share.

* :func:`stage_config`: a base run config specialised to one learning algorithm (LA) and
  its meta-training datasets, with that LA's ``--set``-style overrides.
* :func:`train_or_load`: meta-train a stage into its own run dir (resuming a killed
  start), or load it once it is finished.
* :func:`tuned_hand_designed`: a hand-designed LA; online SGD/Adam get the learning rate
  tuned on meta-training episodes, kept in ``lr.json``.
* :func:`cached_curves`: meta-test accuracy curves computed once and kept in an ``.npz``.
"""

from __future__ import annotations

from pathlib import Path

from vsml_jax.build import check_names, episode_spec, load_data, run_key
from vsml_jax.config import RunConfig, from_dict, parse_override, set_path, to_dict
from vsml_jax.evaluation import cached_hand_designed
from vsml_jax.learners.base import Learner, PyTree
from vsml_jax.loading import load_meta_params
from vsml_jax.runtime.files import load_npz, save_npz


def learner_name(la: str) -> str:
    """``'maml@fo'`` -> ``'maml'``: the registry name of an LA entry (``NAME@VARIANT``)."""
    return la.split("@", 1)[0]


def stage_config(base: RunConfig, la: str, train_sets: tuple[str, ...], overrides=()) -> RunConfig:
    """``base`` for the LA entry ``la`` meta-trained on ``train_sets``: named
    ``<la>__<set+set>``, with ``overrides`` (``key=value`` texts) applied on top."""
    tree = to_dict(base)
    tree.update(name=f"{la.replace('@', '-')}__{'+'.join(train_sets)}", learner=learner_name(la))
    tree["data"]["train_sets"] = list(train_sets)
    for text in overrides:
        set_path(tree, *parse_override(text))
    cfg = from_dict(RunConfig, tree)
    check_names(cfg)
    return cfg


def train_or_load(cfg: RunConfig, run_dir: Path) -> tuple[Learner, PyTree]:
    """Meta-train ``cfg`` into ``run_dir`` (continuing a start that was killed), unless it
    finished before (``summary.json``); returns ``(learner, meta_params)``."""
    from vsml_jax.train import train

    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").exists():
        resume = run_dir if (run_dir / "config.yaml").exists() else False
        train(cfg, resume=resume, run_dir=run_dir)
    _, learner, meta_params = load_meta_params(run_dir)
    return learner, meta_params


def tuned_hand_designed(cfg: RunConfig, run_dir: Path, mesh) -> tuple[Learner, float | None]:
    """The hand-designed LA ``cfg.learner``: online SGD/Adam with the lr of
    ``cfg.eval.baseline_lrs`` that is best on ``cfg.eval.num_episodes`` meta-training
    episodes (kept in ``run_dir/lr.json``, so a resumed run does not tune again), or a
    parameter-free one such as ``ncm``. Returns ``(learner, lr or None)``."""
    ev, cache = cfg.eval, Path(run_dir) / "lr.json"
    tune = cfg.learner in ("sgd", "adam") and not cache.exists()
    data = load_data(cfg, cfg.data.train_sets, "train", mesh) if tune else None
    spec = episode_spec(cfg, ev.episode_length)
    key = run_key(cfg.seed, "baseline_lr")
    return cached_hand_designed(
        cfg.learner, cache, data, spec, ev.num_episodes, ev.baseline_hidden, ev.baseline_lrs, key
    )


def cached_curves(path: Path, compute) -> dict:
    """The arrays kept at ``path``, or ``compute()`` (a dict of arrays) written there
    atomically (by process 0 only) and returned."""
    import jax

    path = Path(path)
    if path.exists():
        return load_npz(path)
    arrays = compute()
    if jax.process_index() == 0:
        save_npz(path, **arrays)
    return arrays
