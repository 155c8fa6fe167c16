"""Learning-algorithm cloning and improving it (the paper's §4.1, Fig. 5, and its title).

1. **Clone.** Train the shared VSML cell to implement online backprop
   (:mod:`experiments.la_cloning.cloning`, on random sequences), then save it as a run directory
   that :func:`vsml_jax.loading.load_meta_params` and ``init_from`` read.
2. **Meta-test the clone** in a shallow (input -> classes) and a deep (input -> hidden ->
   classes, every layer's cells sharing the one cloned V_M) VSML network on online
   episodes of test splits, against the explicit SGD it clones
   (:mod:`vsml_jax.learners.grid_sgd`: same shape, same learning rate, same initial
   weights, same episodes) and a learning-rate-tuned online SGD on an ordinary MLP.
3. **Improve it.** Meta-train from the clone (``init_from``) with meta-gradients and/or
   ES (``improve.trainers``) on downscaled training images (the V_M is grid-size
   invariant), with the meta-loss of each episode's first steps weighted up; meta-test
   each at the test format against the clone and the hand-designed baselines on the same
   episodes, with paired differences.

Every stage writes under ``run_dir`` and is skipped when its output exists, so rerunning
on the same folder (``--resume``) continues where a killed run stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from experiments.la_cloning import cloning
from vsml_jax import plots
from vsml_jax.build import build_learner, check_names, episode_spec, load_data, run_key
from vsml_jax.config import ConfigError, ESConfig, GradConfig, RunConfig, from_dict
from vsml_jax.episode import trace_episode
from vsml_jax.evaluation import (
    cached_accuracy,
    cached_hand_designed,
    paired_difference,
    sample_eval_episodes,
    summarize,
    summary_row,
    write_table,
)
from vsml_jax.learners.base import TaskSpec
from vsml_jax.learners.grid_sgd import grid_sgd, readout_weights
from vsml_jax.learners.vsml import vsml
from vsml_jax.loading import restore_run
from vsml_jax.runtime import rundir
from vsml_jax.runtime.checkpoint import Checkpointer
from vsml_jax.runtime.devices import population_mesh
from vsml_jax.runtime.files import write_text
from vsml_jax.runtime.metrics import read_metrics
from vsml_jax.stages import train_or_load
from vsml_jax.train import Job, NonFiniteFitnessError, train
from vsml_jax.vsml import kernel
from vsml_jax.vsml.backprop import backprop_cell
from vsml_jax.vsml.cell import CellConfig, init_cell_params
from vsml_jax.vsml.network import NetworkConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ImproveConfig:
    """Stage 3: meta-train from the clone with each of ``trainers`` (``grad``: meta-gradients
    with relative steps, ``es``: OpenAI-ES; give them the same wall-time budget through
    ``grad.steps`` and ``es.generations``) on episodes of ``train_sets`` (None:
    ``base.data``'s; grey, so colour sets such as cifar10 mix with the digits) resized to
    ``image_size``, a share ``projection_prob`` of them randomly projected,
    ``episode_length`` steps long, the first ``early_steps`` of each weighted
    ``early_weight`` in the meta-loss; then meta-test each at the test format.

    Every meta-training call ends with a checkpoint. The presets' settings are the runs
    behind docs/RESULTS.md §4: a perturbation of the clone's stored weights is amplified
    2000-fold (``w = 2000 (c_P - c_Q)``), hence ES's small sigma, and the V_M's entries
    span 0 to 2000, hence grad's relative steps."""

    trainers: tuple[str, ...] = ()  # any of 'grad', 'es'
    train_sets: tuple[str, ...] | None = None  # None: base.data.train_sets
    image_size: tuple[int, int] | None = (14, 14)  # None: the test images' size
    projection_prob: float = 0.0  # share of tasks with a fresh random projection of the pixels
    episode_length: int = 500
    early_steps: int = 100
    early_weight: float = 4.0
    grad: GradConfig = GradConfig()  # the presets set both (docs/RESULTS.md §4's runs)
    es: ESConfig = ESConfig()

    def __post_init__(self):
        unknown = [t for t in self.trainers if t not in ("grad", "es")]
        if unknown or len(set(self.trainers)) != len(self.trainers):
            raise ConfigError(
                f"improve.trainers takes each of 'grad' and 'es' at most once, got "
                f"{list(self.trainers)}"
            )


@dataclasses.dataclass(frozen=True)
class LACloningConfig:
    """The cloning target and its training, the test networks, and the improvement.

    ``base`` holds the episode format (``base.data``) and the meta-test (``base.eval``:
    episodes, length, hand-designed baselines); ``improve`` the meta-training from the
    clone.
    """

    name: str = "la_cloning"
    out_dir: str = "runs"
    seed: int = 0
    cell: CellConfig = CellConfig()
    clone: cloning.CloneConfig = cloning.CloneConfig()
    clone_block: int = 100  # cloning steps per jitted call (and per metrics row)
    # 'construct': the V_M of vsml/backprop.py's backprop_cell (needs cell.random_cell_copies
    # 4; cell.random_cell_std sets the initial weights' std / 2000); 'train': the cloning
    # objective of experiments/la_cloning/cloning.py from the paper's initialisation
    clone_method: str = "construct"
    # network.impl of the clone's networks; 'auto': 'fused' where its kernel runs (AVX-512
    # CPUs; vsml_jax.vsml.kernel), else the network's own 'auto'
    impl: str = "auto"
    # hand-designed learners in the clone's meta-test (sgd/adam: same layer sizes, lr tuned)
    clone_baselines: tuple[str, ...] = ("sgd", "adam", "ncm", "knn", "1nn")
    window: int = 250  # paired clone - SGD differences per window of this many steps
    long_steps: int = 0  # > 0: also shallow episodes this long on the first test set
    long_episodes: int = 32
    deep_hidden: tuple[int, ...] = (32,)
    test_sets: tuple[str, ...] = ("mnist", "fashion_mnist")
    improve: ImproveConfig = ImproveConfig()  # stage 3: meta-training from the clone
    base: RunConfig = RunConfig()

    def __post_init__(self):
        if self.clone.train_steps % self.clone_block:
            raise ConfigError(
                f"clone.train_steps ({self.clone.train_steps}) must be a multiple of "
                f"clone_block ({self.clone_block})"
            )
        if self.clone_method not in ("construct", "train"):
            raise ConfigError(
                f"clone_method must be 'construct' or 'train', got {self.clone_method!r}"
            )
        if self.base.learner != "vsml":
            raise ConfigError("la_cloning meta-trains VSML; base.learner must be vsml")
        for trainer in self.improve.trainers:  # a bad schedule stops the run before it starts
            run = improve_run_config(self, trainer, Path("clone"))
            try:  # and so do bad episodes (improve.projection_prob, early_*, ...)
                check_names(run)
            except ConfigError as e:
                raise ConfigError(f"improve: {e}") from None


def clone_network(cfg: LACloningConfig, hidden: tuple[int, ...] = ()) -> NetworkConfig:
    """The VSML network whose tick schedule the clone was trained for."""
    fused = cfg.impl == "auto" and cfg.cell.fits_fused_kernel and kernel.available()
    impl = "fused" if fused else cfg.impl
    return NetworkConfig(
        cell=cfg.cell,
        hidden_layers=hidden,
        num_micro_ticks=cfg.clone.num_ticks,
        output_channel=0,
        backward_pass=True,
        forward_sweep_feedback=False,
        impl=impl,
    )


# --------------------------------------------------------------------------- stage 1: clone


def clone_run_config(cfg: LACloningConfig) -> RunConfig:
    """How the clone's run directory describes itself (a VSML run, as ``init_from`` reads)
    and what :func:`vsml_jax.train.train` runs for ``clone_method: train``: gradient-trained,
    ``clone.train_steps`` steps in calls of ``clone_block``, a checkpoint after each call."""
    steps = cfg.clone.train_steps
    return dataclasses.replace(
        cfg.base,
        name="clone",
        trainer="grad",
        # 'auto': the saved clone loads on any machine (impl changes speed, not results)
        network=dataclasses.replace(clone_network(cfg), impl="auto"),
        init_from=None,
        grad=dataclasses.replace(cfg.base.grad, steps=steps, steps_per_call=cfg.clone_block),
        checkpoint_every=cfg.clone_block,
        eval=dataclasses.replace(cfg.base.eval, every=0, datasets=()),
    )


def clone_task(cfg: LACloningConfig) -> TaskSpec:
    return TaskSpec(cfg.base.data.input_dim or 784, cfg.base.data.num_classes)


def clone_job(cfg: LACloningConfig) -> Job:
    """The cloning objective (:func:`cloning.make_clone_trainer`) as a job of
    :func:`vsml_jax.train.train`, from the paper's initialisation. The cloning draws from
    its own random streams (``clone_init``: cell and pool, ``clone_data``: the sequences),
    not from the keys the loop hands a trainer, so a clone is the one it always was."""
    run_cfg = clone_run_config(cfg)
    k_cell, k_pool = jax.random.split(run_key(cfg.seed, "clone_init"))
    data_key = run_key(cfg.seed, "clone_data")
    cloner = cloning.make_clone_trainer(cfg.cell, cfg.clone, cfg.clone_block)
    trainer = cloner._replace(
        init=lambda meta_params, _: cloner.init(meta_params, k_pool),
        block=lambda state, _, start, key: cloner.block(state, key, start),
        args=(data_key,),
    )
    meta_params = (init_cell_params(k_cell, cfg.cell),)
    return Job(build_learner(run_cfg), clone_task(cfg), meta_params, trainer)


def train_clone(cfg: LACloningConfig, run_dir: Path):
    """Train (``clone_method: train``, by :func:`vsml_jax.train.train`; a killed run goes on
    from its last checkpoint) or construct the clone, or load it once it is finished
    (``summary.json``); returns ``(cell_params, readout)``."""
    if not (run_dir / "summary.json").exists() and cfg.clone_method == "construct":
        run_dir.mkdir(parents=True, exist_ok=True)
        params, readout = backprop_cell(cfg.cell, cfg.clone.lr, cfg.clone.bias_lr)
        _save_clone(cfg, run_dir, params, readout, {"method": "construct"})
    if not (run_dir / "summary.json").exists():
        resume = run_dir if (run_dir / "config.yaml").exists() else False
        try:
            train(clone_run_config(cfg), resume, run_dir, job=lambda _, mesh: clone_job(cfg))
        except NonFiniteFitnessError:
            raise FloatingPointError(NOT_FINITE) from None
        if not np.isfinite(read_metrics(run_dir)[-1]["meta_loss"]):
            (run_dir / "summary.json").unlink()  # not a finished clone
            raise FloatingPointError(NOT_FINITE)
    _, _, meta_params, raw = restore_run(run_dir)
    return meta_params[0], clone_readout(raw)


NOT_FINITE = "the cloning loss is not finite; lower clone.meta_lr"


def clone_readout(raw: dict) -> np.ndarray:
    """The read-out ``[2, H]`` of a clone's raw checkpoint (:func:`restore_run`): beside the
    mean of a constructed clone, in the trainer state of a trained one."""
    return np.asarray(raw["readout"] if "readout" in raw else raw["state"]["params"]["readout"])


def _save_clone(cfg: LACloningConfig, run_dir: Path, cell_params, readout, summary: dict):
    """Write a constructed clone as a run directory (checkpoint, config, task, summary)."""
    steps = cfg.clone.train_steps
    flat, _ = ravel_pytree((cell_params,))
    ckpt = Checkpointer(run_dir / "checkpoints", keep=1)
    try:
        ckpt.save(steps, {"mean": flat, "readout": jax.numpy.asarray(readout)})
    finally:
        ckpt.close()
    rundir.write_config(run_dir, clone_run_config(cfg))
    write_text(run_dir / "task.json", json.dumps(dataclasses.asdict(clone_task(cfg))))
    write_text(run_dir / "summary.json", json.dumps(summary, indent=2))


CLONE_LOSS_TERMS = {"meta_loss": "loss", "clone_fwd": "fwd", "clone_bwd": "bwd"}
CLONE_LOSS_TERMS |= {"clone_w": "w", "clone_beta": "beta"}


def plot_clone_loss(records: list[dict], path: Path, smooth_window: int = 1):
    """The cloning loss and its terms against the cloning step (log scale)."""
    steps = [r["generation"] for r in records]
    series = {name: (steps, [r[k] for r in records]) for k, name in CLONE_LOSS_TERMS.items()}
    plots.plot_curves(
        series,
        path,
        xlabel="cloning step",
        ylabel="relative squared error",
        title="cloning loss (random sequences)",
        log_y=True,
        smooth_window=smooth_window,
    )


def weight_traces(cfg, cell_params, readout, data, spec, key, num_cells: int = 6):
    """Read-out ``w`` of the clone and the reference's ``w`` for a few cells of the shallow
    network over one test episode: ``(clone [T, n], reference [T, n], accuracies)``."""
    net = clone_network(cfg)
    xs, labels, init_keys = sample_eval_episodes(data, spec, 1, key)
    idx = jax.random.choice(key, xs.shape[-1] * spec.num_classes, (num_cells,), replace=False)
    a, b = idx // spec.num_classes, idx % spec.num_classes

    def clone_w(state):
        return readout_weights(state.cells[:1], readout)[0].w[a, b]

    def ref_w(state):
        return state.layers[0].w[a, b]

    run = lambda learner, mp, obs: trace_episode(  # noqa: E731
        learner, mp, xs[0], labels[0], init_keys[0], spec.num_classes, obs
    )
    clone, w_clone = jax.jit(lambda: run(vsml(net), (cell_params,), clone_w))()
    ref, w_ref = jax.jit(
        lambda: run(grid_sgd(cfg.clone.lr, cfg.clone.bias_lr, net, readout), {}, ref_w)
    )()
    return np.asarray(w_clone), np.asarray(w_ref), (clone.accuracy, ref.accuracy)


# --------------------------------------------------------------------------- meta-tests


def _test_learners(prefix: Path, learners: dict, data, spec, num, key) -> dict:
    """``{label: accuracy [num, T]}`` on the same episodes, each cached at ``prefix<tag>.npz``."""
    out = {}
    for label, (learner, mp) in learners.items():
        tag = label.split(" (")[0].replace(" ", "_").replace(",", "").replace("+", "plus")
        path = prefix.with_name(f"{prefix.name}{tag}.npz")
        out[label] = cached_accuracy(path, learner, mp, data, spec, num, key)
    return out


def _rows(stage: str, test_set: str, network: str, accs: dict) -> list[dict]:
    return [
        {
            "stage": stage,
            "test_set": test_set,
            "network": network,
            "learner": k,
            **summary_row(summarize(a)),
        }
        for k, a in accs.items()
    ]


def _tuned(name, cfg: LACloningConfig, train_data, spec, hidden, cache: Path):
    """A hand-designed baseline; sgd/adam get the lr of ``base.eval.baseline_lrs`` that is
    best on meta-*training* episodes (cached in ``cache``)."""
    ev = cfg.base.eval
    key = run_key(cfg.seed, f"baseline_lr/{hidden}")
    return cached_hand_designed(
        name, cache, train_data, spec, ev.num_episodes, hidden, ev.baseline_lrs, key
    )


def run(cfg: LACloningConfig, run_dir: Path) -> list[dict]:
    """All stages; returns the result rows (also written to ``results.csv`` / ``.md``)."""
    base = cfg.base
    mesh = population_mesh()
    ev = base.eval
    spec = episode_spec(base, ev.episode_length)

    cell_params, readout = train_clone(cfg, run_dir / "clone")
    if cfg.clone_method == "train":
        plot_clone_loss(
            read_metrics(run_dir / "clone"), run_dir / "cloning_loss.png", cfg.clone_block
        )

    test_data = {t: load_data(base, [t], "test", mesh) for t in cfg.test_sets}
    train_data = load_data(base, base.data.train_sets, "train", mesh)
    keys = {
        t: jax.random.fold_in(run_key(base.seed, "meta_test"), i) for i, t in enumerate(test_data)
    }

    first = cfg.test_sets[0]
    w_clone, w_ref, _ = weight_traces(
        cfg, cell_params, readout, test_data[first], spec, keys[first]
    )
    plots.plot_paired_traces(
        w_ref,
        w_clone,
        run_dir / "weights.png",
        labels=("reference SGD w", "read-out of the VSML cell"),
        title=f"shallow clone vs SGD on one {first} episode",
        ylabel="w_ab",
    )
    w_err = float(np.abs(w_clone - w_ref).mean() / np.abs(w_ref).mean())
    log.info("weights: mean |w_clone - w_ref| / mean |w_ref| = %.3f over the episode", w_err)

    extra = {"weight_rel_error": w_err}
    if cfg.clone_method == "train":  # the construction's initial states are not c_std's
        extra["forward_message_error"] = float(
            cloning.forward_message_error(
                cell_params,
                readout,
                run_key(cfg.seed, "fwd_check"),
                cfg.cell,
                (spec.input_dim or 784, spec.num_classes),
            )
        )
    rows, windows, fig5, compare = [], [], {}, {}
    cache = run_dir / "meta_test"
    sgd_label = f"SGD it clones (lr={cfg.clone.lr:g})"
    for shape, hidden in (("shallow", ()), ("deep", tuple(cfg.deep_hidden))):
        net = clone_network(cfg, hidden)
        learners = {
            "VSML clone": (vsml(net), (cell_params,)),
            sgd_label: (grid_sgd(cfg.clone.lr, cfg.clone.bias_lr, net, readout), {}),
        }
        free = {}  # parameter-free baselines: the same for both networks
        for name in cfg.clone_baselines:
            learner, lr = _tuned(
                name, cfg, train_data, spec, hidden, cache / f"{name}_{shape}.json"
            )
            (free if lr is None else learners)[name if lr is None else f"{name} (lr={lr:g})"] = (
                learner,
                {},
            )
        for t, data in test_data.items():
            prefix = cache / f"{t}__{shape}__"
            panel = _test_learners(prefix, learners, data, spec, ev.num_episodes, keys[t])
            panel.update(
                _test_learners(cache / f"{t}__", free, data, spec, ev.num_episodes, keys[t])
            )
            fig5[f"{t}, {shape}"] = panel
            rows += _rows("clone", t, shape, panel)
            windows += paired_windows(t, shape, panel["VSML clone"], panel[sgd_label], cfg.window)
            if shape == "shallow":
                compare[t] = panel
    if cfg.long_steps:
        t = cfg.test_sets[0]
        long_spec = episode_spec(base, cfg.long_steps)
        net = clone_network(cfg)
        learners = {
            "VSML clone": (vsml(net), (cell_params,)),
            sgd_label: (grid_sgd(cfg.clone.lr, cfg.clone.bias_lr, net, readout), {}),
        }
        prefix = cache / f"{t}__long{cfg.long_steps}__"
        panel = _test_learners(
            prefix, learners, test_data[t], long_spec, cfg.long_episodes, keys[t]
        )
        fig5[f"{t}, shallow, {cfg.long_steps} steps"] = panel
        rows += _rows("clone", t, f"shallow, {cfg.long_steps} steps", panel)
        windows += paired_windows(
            t, f"shallow, {cfg.long_steps} steps", panel["VSML clone"], panel[sgd_label], 1000
        )
    (run_dir / "windows").mkdir(exist_ok=True)
    write_table(windows, run_dir / "windows")
    plots.plot_accuracy_curves(fig5, run_dir / "fig5.png", title="VSML clone of backprop vs SGD")

    if cfg.improve.trainers:
        rows += improve(cfg, run_dir, test_data, spec, keys, compare)
        plots.plot_accuracy_curves(compare, run_dir / "improve.png", title="improving the clone")
        plots.plot_accuracy_curves(
            compare, run_dir / "improve_logx.png", title="improving the clone", log_x=True
        )
    write_results(rows, run_dir, extra)
    return rows


def paired_windows(test_set: str, network: str, clone, sgd, window: int) -> list[dict]:
    """Per window of ``window`` steps: both learners' mean accuracy and the paired
    difference (clone - SGD) over episodes with its 95% interval."""
    clone, sgd = np.asarray(clone, np.float64), np.asarray(sgd, np.float64)
    n, T = clone.shape
    out = []
    for s in range(0, T, window):
        a, b = clone[:, s : s + window].mean(1), sgd[:, s : s + window].mean(1)
        d = a - b
        ci = 1.96 * d.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        out.append(
            {
                "test_set": test_set,
                "network": network,
                "window": f"{s + 1}-{min(s + window, T)}",
                "clone_acc": float(a.mean()),
                "sgd_acc": float(b.mean()),
                "diff": float(d.mean()),
                "diff_ci95": float(ci),
            }
        )
    return out


IMPROVED = {"grad": "VSML clone + meta-gradients", "es": "VSML clone + ES"}
IMPROVE_REFERENCES = ("VSML clone", "adam", "ncm", "1nn")  # paired differences against these


def improve_run_config(cfg: LACloningConfig, trainer: str, clone_dir: Path) -> RunConfig:
    """The meta-training run of ``trainer`` from the clone in ``clone_dir``."""
    imp = cfg.improve
    return dataclasses.replace(
        cfg.base,
        name=f"clone_{trainer}",
        trainer=trainer,
        network=clone_network(cfg),
        init_from=str(clone_dir),
        data=dataclasses.replace(
            cfg.base.data,
            train_sets=imp.train_sets or cfg.base.data.train_sets,
            grey=True,
            image_size=imp.image_size,
            projection_prob=imp.projection_prob,
            episode_length=imp.episode_length,
            early_steps=imp.early_steps,
            early_weight=imp.early_weight,
        ),
        grad=imp.grad,
        es=imp.es,
        checkpoint_every=imp.grad.steps_per_call
        if trainer == "grad"
        else imp.es.generations_per_call,
        eval=dataclasses.replace(cfg.base.eval, every=0, datasets=()),
    )


def improve(cfg: LACloningConfig, run_dir, test_data, spec, keys, compare):
    """Stage 3: meta-train from the clone with each trainer, meta-test each on the shallow
    meta-test's episodes; ``improve/results.md`` holds the paired differences against
    the clone, tuned Adam, NCM and 1-NN."""
    net = clone_network(cfg)
    learners = {}
    for trainer in cfg.improve.trainers:
        run_cfg = improve_run_config(cfg, trainer, run_dir / "clone")
        _, meta_params = train_or_load(run_cfg, run_dir / "meta_train" / run_cfg.name)
        learners[IMPROVED[trainer]] = (vsml(net), meta_params)
    rows, paired = [], []
    for t, data in test_data.items():
        prefix = run_dir / "meta_test" / f"{t}__improve__"
        accs = _test_learners(prefix, learners, data, spec, cfg.base.eval.num_episodes, keys[t])
        refs = {k.split(" (")[0]: v for k, v in compare[t].items()}
        compare[t] = {
            **accs,
            **{k: v for k, v in compare[t].items() if k.split(" (")[0] in IMPROVE_REFERENCES},
        }
        rows += _rows("improve", t, "shallow", accs)
        for label, acc in accs.items():
            for ref in IMPROVE_REFERENCES:
                if ref in refs:
                    d = paired_difference(acc, refs[ref])
                    paired.append({"test_set": t, "learner": label, "minus": ref, **d})
    (run_dir / "improve").mkdir(exist_ok=True)
    write_table(paired, run_dir / "improve")
    return rows


def write_results(rows: list[dict], run_dir: Path, extra: dict):
    write_table(rows, run_dir, tuple(f"{k}: {v:.4f}" for k, v in extra.items()))


def load(tree: dict) -> LACloningConfig:
    """The config of a run's ``config.yaml``; a run saved before ``improve`` became a
    section has ``improve: false`` (nothing improved), read as no trainers."""
    if tree.get("improve") is False:
        tree = {**tree, "improve": {"trainers": []}}
    return from_dict(LACloningConfig, tree)
