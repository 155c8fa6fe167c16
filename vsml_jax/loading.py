"""Meta-learned learners as artifacts: load one from a run directory, a checkpoint or a
shipped name, with its meta-parameters bound and a model card.

>>> from vsml_jax import load_learner
>>> trained = load_learner("clone_backprop_es")        # or "runs/quickstart/<run-id>"
>>> session = trained.start(jax.random.PRNGKey(0), input_dim=784, num_classes=10)
>>> out = session.run(xs, ys)                           # numpy stream -> per-step predictions
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import jax

from vsml_jax.build import build_learner, unravel_meta_params
from vsml_jax.config import RunConfig, load_config, to_dict
from vsml_jax.learners.base import Learner, PyTree, TaskSpec
from vsml_jax.runtime.checkpoint import Checkpointer

log = logging.getLogger(__name__)

PRETRAINED_PREFIX = "pretrained:"


@dataclasses.dataclass(frozen=True)
class TrainedLearner:
    """A learner with its meta-parameters bound.

    Attributes:
        learner: the pure ``meta_init`` / ``init`` / ``step`` functions.
        meta_params: its meta-parameters.
        config: the run config it was meta-trained with (its preprocessing too).
        task: the task family it was meta-trained on (input size, class count).
        card: the model card: source, config, command, code version, meta-test numbers.
    """

    learner: Learner
    meta_params: PyTree
    config: RunConfig
    task: TaskSpec
    card: dict

    @property
    def name(self) -> str:
        return str(self.card.get("name", self.learner.name))

    def input_plan(self, d: int, image_shape: tuple | None = None) -> tuple[str, int]:
        """How this learner reads inputs of size ``d`` as it was meta-trained:
        ``("project", A)`` (its tasks were randomly projected to ``A`` inputs), ``("as_is",
        d)`` (VSML runs on any grid), ``("resize", A)`` (square ``A``-pixel images, given an
        ``image_shape``) or ``("pad", A)``; raises ValueError if it cannot read them."""
        a = self.task.input_dim
        if self.config.data.projection_prob > 0:
            return "project", a
        if self.config.learner == "vsml" or d == a:
            return "as_is", d
        if image_shape is not None and len(image_shape) >= 2 and math.isqrt(a) ** 2 == a:
            return "resize", a
        if d < a:
            return "pad", a
        raise ValueError(
            f"inputs of size {d} do not fit learner {self.name!r}, which reads {a} inputs and "
            f"was not meta-trained with a projection; resize or reduce them to at most {a}"
        )

    def start(self, key: jax.Array, input_dim, num_classes: int, mean=None, std=None):
        """An online session on inputs of ``input_dim`` (an int, or an image shape
        ``(H, W[, C])``) and ``num_classes`` classes; see :class:`vsml_jax.online.Session`."""
        from vsml_jax.online import Session

        return Session(self, key, input_dim, num_classes, mean=mean, std=std)


def _task(run_dir: Path) -> TaskSpec:
    path = run_dir / "task.json"
    try:
        return TaskSpec(**json.loads(path.read_text()))
    except (TypeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise ValueError(
            f"{path} is corrupt ({type(e).__name__}: {e}); it holds the run's input size and "
            'class count as {"input_dim": D, "num_classes": C}: restore or rewrite it'
        ) from None


def restore_run(run_dir: str | Path, step: int | None = None):
    """A run's config, learner, mean meta-parameters and the raw checkpoint dict (latest
    checkpoint by default): ``(config, learner, meta_params, raw)``.

    Raises:
        CheckpointError: the checkpoint cannot be read, does not match its checksum, or
            its meta-parameters are not all finite.
    """
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    learner = build_learner(cfg)
    task = _task(run_dir)
    ckpt = Checkpointer(run_dir / "checkpoints")
    try:
        raw = ckpt.restore_raw(step)
    finally:
        ckpt.close()
    return cfg, learner, unravel_meta_params(learner, task, raw["mean"]), raw


def load_meta_params(run_dir: str | Path, step: int | None = None):
    """The ES mean meta-parameters of a run (latest checkpoint by default), as a pytree.

    Returns ``(config, learner, meta_params)``, ready for :func:`vsml_jax.evaluation.evaluate`.
    """
    return restore_run(run_dir, step)[:3]


def initial_meta_params(cfg: RunConfig, like):
    """The final meta-parameters of the run ``cfg.init_from`` (a run directory, or
    ``pretrained:NAME`` for a shipped learner), checked against ``like``
    (this run's freshly initialised meta-parameters): same learner, same pytree, same shapes.
    """
    source = Path(cfg.init_from)
    if cfg.init_from.startswith("pretrained:"):  # a shipped learner (vsml_jax.pretrained)
        from vsml_jax import pretrained

        p = pretrained.load(cfg.init_from[len("pretrained:") :])
        src_cfg, params = p.config, p.meta_params
    elif not (source / "config.yaml").is_file() or not (source / "task.json").is_file():
        raise FileNotFoundError(
            f"init_from: {source} is not a run directory (it needs config.yaml, task.json and "
            "checkpoints/) nor pretrained:NAME; pass the directory a training run printed as "
            "'run dir'"
        )
    else:
        src_cfg, _, params = load_meta_params(source)
    if src_cfg.learner != cfg.learner:
        raise ValueError(
            f"init_from: {source} trained learner {src_cfg.learner!r}, this run trains "
            f"{cfg.learner!r}; start from a run of the same learner"
        )

    def signature(tree):
        leaves, treedef = jax.tree.flatten(tree)
        return treedef, [(tuple(x.shape), str(x.dtype)) for x in leaves]

    (want_def, want), (got_def, got) = signature(like), signature(params)
    if want_def != got_def or want != got:
        diff = next(
            (f"leaf {i}: {g[0]} vs {w[0]}" for i, (g, w) in enumerate(zip(got, want)) if g != w),
            f"{len(got)} vs {len(want)} arrays",
        )
        raise ValueError(
            f"init_from: the meta-parameters of {source} do not fit this run's learner "
            f"({diff}); use the same network / learner_args as that run"
        )
    log.info("meta-parameters initialised from %s", source)
    return params


def _read_json(path: Path) -> dict:
    """A run's optional record (summary, provenance): ``{}`` if absent or unreadable."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as e:  # a record of the run, not needed to use its learner
        log.warning("%s is corrupt (%s); its fields are left out of the model card", path, e)
        return {}


def _from_run(run_dir: Path, step: int | None, source) -> TrainedLearner:
    cfg, learner, meta_params, _ = restore_run(run_dir, step)
    task = _task(run_dir)
    summary = _read_json(run_dir / "summary.json")
    card = {
        "name": f"{cfg.name}/{run_dir.name}",
        "source": str(source),
        **_read_json(run_dir / "provenance.json"),  # command, code_version
        "config": to_dict(cfg),
        "meta_test": {k: v for k, v in summary.items() if k.startswith("eval/")},
    }
    return TrainedLearner(learner, meta_params, cfg, task, card)


def load_learner(source: str | Path, learner: str | None = None) -> TrainedLearner:
    """The meta-learned learner at ``source``: a run directory (its latest checkpoint), a
    checkpoint folder ``<run>/checkpoints/<step>``, or the name of a shipped learner
    (``NAME`` or ``pretrained:NAME``, see :func:`vsml_jax.pretrained.available`).

    With ``learner``, the source must hold that learner (e.g. ``"vsml"``).

    Raises:
        FileNotFoundError: nothing loadable at ``source``.
        ValueError: a learner other than ``learner``, or stored parameters that do not
            fit the stored config.
    """
    from vsml_jax import pretrained

    text = str(source)
    path = Path(source)
    if text.startswith(PRETRAINED_PREFIX) or (not path.exists() and text in pretrained.available()):
        p = pretrained.load(text.removeprefix(PRETRAINED_PREFIX))
        trained = TrainedLearner(
            p.learner, p.meta_params, p.config, TaskSpec(**p.card["task"]), p.card
        )
    elif (path / "config.yaml").is_file() and (path / "task.json").is_file():
        trained = _from_run(path, None, source)
    elif path.parent.name == "checkpoints" and path.name.isdigit() and path.is_dir():
        trained = _from_run(path.parent.parent, int(path.name), source)
    elif path.exists():
        raise FileNotFoundError(
            f"{source} is neither a run directory (config.yaml, task.json, checkpoints/) nor "
            "a checkpoint folder <run>/checkpoints/<step>"
        )
    else:
        raise FileNotFoundError(
            f"no run directory, checkpoint or shipped learner {text!r}; shipped learners: "
            f"{', '.join(pretrained.available())}"
        )
    if learner is not None and trained.config.learner != learner:
        raise ValueError(f"{source} holds learner {trained.config.learner!r}, not {learner!r}")
    return trained


__all__ = [
    "TrainedLearner",
    "initial_meta_params",
    "load_learner",
    "load_meta_params",
    "restore_run",
    "unravel_meta_params",
]
