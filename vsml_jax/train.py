"""The meta-training loop: blocks of jitted ES generations, logs, checkpoints, meta-tests.

Nothing inside a block of generations returns to Python. Between blocks the
loop logs metrics, saves checkpoints and runs the meta-test evaluation.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import shutil
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from tqdm.auto import tqdm

from vsml_jax import plots, rundir
from vsml_jax.checkpoint import Checkpointer
from vsml_jax.config import RunConfig
from vsml_jax.data import load_split, to_device
from vsml_jax.data.episodes import DeviceDataset, EpisodeSpec
from vsml_jax.data.preprocess import filter_classes
from vsml_jax.evaluation import evaluate, hand_designed, summarize
from vsml_jax.learners.base import Learner, TaskSpec
from vsml_jax.learners.vsml import vsml
from vsml_jax.meta import es
from vsml_jax.meta.sharding import (
    PeerWatchdog,
    check_population,
    configure_cpu_devices,
    maybe_initialize_distributed,
    peer_failed,
    population_mesh,
    replicate,
    replicated,
    set_failure_note,
    to_host,
)
from vsml_jax.metrics import MetricsWriter, read_metrics

log = logging.getLogger(__name__)


class NonFiniteFitnessError(FloatingPointError):
    """Too many consecutive generations had their update skipped as non-finite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C: the message says where the last checkpoint is."""


# --------------------------------------------------------------------------- building blocks


def run_key(seed: int, purpose: str) -> jax.Array:
    """An independent PRNG key per (seed, purpose): no two purposes or seeds collide."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(purpose.encode()) & 0x7FFFFFFF)


def build_learner(cfg: RunConfig) -> Learner:
    """VSML from ``cfg.network``; any other learner by name with ``cfg.learner_args``."""
    if cfg.learner == "vsml":
        return vsml(cfg.network)
    from vsml_jax.learners import make_learner

    return make_learner(cfg.learner, **cfg.learner_args)


def episode_spec(cfg: RunConfig, length: int) -> EpisodeSpec:
    d = cfg.data
    return EpisodeSpec(
        length=length,
        input_dim=d.input_dim,
        num_classes=d.num_classes,
        projection_prob=d.projection_prob,
        permute_pixels=d.permute_pixels,
        permute_labels=d.permute_labels,
    )


def load_arrays(cfg: RunConfig, names, split: str):
    """Host arrays of ``names``, with the configured class filter applied."""
    d = cfg.data
    arrays = [load_split(n, split, data_dir=d.data_dir) for n in names]
    if d.classes is not None or d.max_classes is not None:
        arrays = [filter_classes(a, d.classes, max_classes=d.max_classes) for a in arrays]
    return arrays


def load_data(cfg: RunConfig, names, split: str, mesh) -> DeviceDataset:
    """Load, preprocess and place ``names`` (one mixture) on every device of ``mesh``."""
    return place_data(cfg, load_arrays(cfg, names, split), mesh)


def place_data(cfg: RunConfig, arrays, mesh) -> DeviceDataset:
    """Check, preprocess and place host arrays (one mixture) on every device of ``mesh``."""
    d = cfg.data
    for a in arrays:
        log.info("data %s/%s: %s, %d examples", a.name, a.split, a.source, len(a.labels))
        if a.num_classes > d.num_classes:
            raise ValueError(
                f"dataset {a.name} has {a.num_classes} classes but data.num_classes is "
                f"{d.num_classes}; raise data.num_classes"
            )
    data = to_device(arrays, image_size=d.image_size, grey=d.grey)
    return replicate(data, mesh)


def task_spec(cfg: RunConfig, data: DeviceDataset) -> TaskSpec:
    input_dim = cfg.data.input_dim or int(np.prod(data.input_shape))
    return TaskSpec(input_dim=input_dim, num_classes=cfg.data.num_classes)


def new_run_dir(cfg: RunConfig) -> Path:
    """Create ``runs/<name>/<stamp>-seed<seed>`` (``-2``, ``-3``, ... if that exists).

    Process 0 creates it exclusively; in multi-process runs its clock and its choice of
    suffix name the dir for every process.
    """
    now = np.int64(time.time())
    multi = jax.process_count() > 1
    if multi:
        from jax.experimental import multihost_utils

        now = multihost_utils.broadcast_one_to_all(now)
    stamp = datetime.datetime.fromtimestamp(int(now)).strftime("%Y%m%d-%H%M%S")
    root, base = Path(cfg.out_dir) / cfg.name, f"{stamp}-seed{cfg.seed}"
    if not multi:
        return rundir.create_run_dir(root, base)
    path, n = None, np.int32(-1)
    if jax.process_index() == 0:
        try:
            path = rundir.create_run_dir(root, base)
            n = np.int32(1 if path.name == base else int(path.name.rsplit("-", 1)[1]))
        finally:
            n = multihost_utils.broadcast_one_to_all(n)
        return path
    n = int(multihost_utils.broadcast_one_to_all(n))
    if n < 0:
        raise rundir.RunDirError(f"process 0 could not create a run dir under {root}")
    return root / (base if n == 1 else f"{base}-{n}")


def latest_run_dir(cfg: RunConfig) -> Path:
    """The newest run of ``cfg.name`` that wrote at least one checkpoint."""
    root = Path(cfg.out_dir) / cfg.name
    runs = rundir.sorted_runs(
        p
        for p in root.glob("*")
        if (p / "config.yaml").exists() and any((p / "checkpoints").glob("[0-9]*"))
    )
    if not runs:
        raise FileNotFoundError(f"--resume: no run to resume under {root}; start without --resume")
    return runs[-1]


class Trainer(NamedTuple):
    """A meta-trainer: its initial state, a block of generations, and the mean params."""

    init_state: Any
    block: Callable  # (state, base_key, start, *args) -> (state, metrics per generation)
    mean: Callable  # state -> meta-parameter pytree
    # arrays passed to every block call (the dataset), so that they are inputs of the
    # compiled program rather than constants copied into it
    args: tuple = ()


def make_trainer(cfg: RunConfig, learner: Learner, meta_params, data, spec, mesh, key) -> Trainer:
    """ES (evosax, population sharded over ``mesh``) or meta-gradients (``cfg.trainer``)."""
    K = cfg.es.generations_per_call
    num_classes = cfg.data.num_classes
    if cfg.trainer == "es":
        strategy = es.make_strategy(cfg.es, meta_params)
        evaluate_pop = es.make_evaluate(learner, data, spec, num_classes, mesh, cfg.es.eval_batch)
        block = es.make_train_block(es.make_generation(strategy, evaluate_pop), K)
        init = es.init_strategy(strategy, key, meta_params)
        return Trainer(init, block, strategy.get_mean, (data,))
    from jax.flatten_util import ravel_pytree

    from vsml_jax.meta import grad

    g = cfg.grad
    if g.batch_size % mesh.size:
        raise ValueError(
            f"grad.batch_size {g.batch_size} does not divide over {mesh.size} "
            f"devices; make it a multiple of {mesh.size}"
        )
    flat, unravel = ravel_pytree(meta_params)
    optimizer = optax.adam(g.lr)
    if g.clip_norm:
        optimizer = optax.chain(optax.clip_by_global_norm(g.clip_norm), optimizer)
    block = grad.make_grad_train_block(
        learner,
        optimizer,
        unravel,
        data,
        spec,
        num_classes,
        g.batch_size,
        K,
        remat=g.remat,
        mesh=mesh,
    )
    return Trainer(grad.init_grad_state(optimizer, flat), block, lambda s: unravel(s.mean))


# --------------------------------------------------------------------------- meta-test


class MetaTester:
    """Meta-test episodes on test splits, with hand-designed baselines on the same episodes.

    Baseline learning rates are tuned once on meta-*training* episodes; baseline
    curves do not depend on the meta-parameters, so they are computed once.
    """

    def __init__(self, cfg: RunConfig, learner: Learner, train_data: DeviceDataset, mesh):
        self.cfg, self.learner = cfg, learner
        ev = cfg.eval
        self.test_sets = {n: load_data(cfg, [n], ev.split, mesh) for n in ev.datasets}
        self.key = run_key(cfg.seed, "meta_test")
        self.baselines: dict[str, Learner] = {}
        self.baseline_lrs: dict[str, float] = {}
        if ev.baselines:
            spec = episode_spec(cfg, ev.episode_length)
            for name in ev.baselines:
                learner_b, lr = hand_designed(
                    name,
                    train_data,
                    spec,
                    ev.num_episodes,
                    ev.baseline_hidden,
                    ev.baseline_lrs,
                    run_key(cfg.seed, "baseline_lr"),
                )
                if lr is not None:
                    self.baseline_lrs[name] = lr
                self.baselines[name if lr is None else f"{name} (lr={lr:g})"] = learner_b
            log.info(
                "baseline learning rates tuned on meta-training episodes: %s", self.baseline_lrs
            )
        self._baseline_curves: dict[str, dict[str, np.ndarray]] = {}

    def __call__(self, meta_params) -> tuple[dict, dict]:
        """Returns ``(summary, curves)``; ``curves[dataset][learner] = acc [N, T]``."""
        ev = self.cfg.eval
        summary, curves = {}, {}
        for i, (name, data) in enumerate(self.test_sets.items()):
            spec = episode_spec(self.cfg, ev.episode_length)
            key = jax.random.fold_in(self.key, i)
            curves[name] = {
                f"{self.learner.name} (meta-learned)": evaluate(
                    self.learner, meta_params, data, spec, ev.num_episodes, key
                ).accuracy
            }
            if name not in self._baseline_curves:
                self._baseline_curves[name] = {
                    label: evaluate(b, {}, data, spec, ev.num_episodes, key).accuracy
                    for label, b in self.baselines.items()
                }
            curves[name].update(self._baseline_curves[name])
            for label, acc in curves[name].items():
                for k, v in summarize(acc).items():
                    summary[f"eval/{name}/{label.split(' ')[0]}/{k}"] = v
        return summary, curves


# --------------------------------------------------------------------------- the loop


def train(
    cfg: RunConfig, resume: bool | str | Path = False, run_dir: str | Path | None = None
) -> Path:
    """Meta-train ``cfg`` into ``run_dir`` (default: a new ``runs/<name>/<stamp>``).

    With ``resume`` (True: the latest run of ``cfg.name``, or a run dir) continue
    from that run's last checkpoint; ``cfg`` may differ from the run's saved config only
    in the keys of :data:`vsml_jax.rundir.RESUME_SAFE`. Process 0 holds an exclusive lock
    on the run dir for the whole run.
    """
    per_device = cfg.es.population_size if cfg.trainer == "es" else cfg.grad.batch_size
    configure_cpu_devices(cfg.cpu_devices, divides=per_device)
    maybe_initialize_distributed(
        cfg.distributed, cfg.distributed_heartbeat_timeout_s, cfg.distributed_init_timeout_s
    )
    is_main = jax.process_index() == 0
    mesh = population_mesh()
    if cfg.trainer == "es":
        check_population(cfg.es.population_size, mesh)

    created = False
    if resume:
        run_dir = latest_run_dir(cfg) if resume is True else Path(resume)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"--resume {run_dir}: no such run dir")
    elif run_dir is not None:
        run_dir = Path(run_dir)
        if is_main:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise rundir.RunDirError(f"cannot create run dir {run_dir}: {e}") from None
    else:
        run_dir, created = new_run_dir(cfg), True
    lock = rundir.RunLock(run_dir) if is_main else None
    try:
        if lock is not None:
            lock.acquire()
        if resume:  # before anything is written: the saved config is the reference
            rundir.check_resume_config(rundir.saved_config(run_dir), cfg, run_dir)
        if is_main:
            print(f"run dir: {run_dir}", flush=True)
        return _train(cfg, resume, run_dir, created, mesh, is_main)
    except BaseException:
        # a fresh run that failed before it started leaves nothing behind
        if created and is_main and not (run_dir / "config.yaml").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            lock.release()


def _train(cfg: RunConfig, resume, run_dir: Path, created: bool, mesh, is_main: bool) -> Path:
    train_data = load_data(cfg, cfg.data.train_sets, "train", mesh)
    learner = build_learner(cfg)
    task = task_spec(cfg, train_data)
    spec = episode_spec(cfg, cfg.data.episode_length)

    k_meta, k_es, k_run = (run_key(cfg.seed, tag) for tag in ("meta_init", "es", "run"))
    meta_params = learner.meta_init(k_meta, task)
    if cfg.init_from:
        meta_params = initial_meta_params(cfg, meta_params)
    num_params = sum(x.size for x in jax.tree.leaves(meta_params))
    if num_params == 0:
        raise ValueError(
            f"learner {learner.name!r} has no meta-parameters, so there is nothing to "
            "meta-train; evaluate it directly (vsml_jax.evaluation)"
        )
    log.info("learner %s: %d meta-parameters, task %s", learner.name, num_params, task)

    trainer = make_trainer(cfg, learner, meta_params, train_data, spec, mesh, k_es)
    rep = replicated(mesh)
    block = jax.jit(trainer.block, out_shardings=(rep, rep))
    state = replicate(to_host(trainer.init_state), mesh)
    ckpt = Checkpointer(run_dir / "checkpoints", keep=cfg.keep_checkpoints)
    start = 0
    latest = ckpt.latest_step()
    saved = [latest]  # the last checkpoint step, for the failure and interrupt messages
    set_failure_note(lambda: _last_checkpoint_note(saved[0], run_dir))
    if latest is not None:
        if not resume:
            ckpt.close()
            raise FileExistsError(f"{run_dir} already has checkpoints; pass --resume")
        K = cfg.es.generations_per_call
        if latest % K:
            ckpt.close()
            raise ValueError(
                f"checkpoint {latest} is not a multiple of es.generations_per_call={K}; "
                f"resume with the generations_per_call the run was started with"
            )
        try:
            state = ckpt.restore(latest, state)
        except BaseException:
            ckpt.close()
            raise
        start = latest
        print(f"resumed from generation {start} ({ckpt.directory / str(latest)})", flush=True)
    elif resume and is_main:
        rows = len(read_metrics(run_dir))
        print(
            f"--resume {run_dir}: it has no checkpoint, so training restarts from generation 0"
            + (f"; its {rows} old metrics rows were dropped" if rows else ""),
            flush=True,
        )
    if is_main:  # written once the config has proved loadable (and the checkpoint restorable)
        rundir.write_config(run_dir, cfg)
        (run_dir / "task.json").write_text(json.dumps(dataclasses.asdict(task)))

    writer = MetricsWriter(
        run_dir,
        tensorboard=cfg.tensorboard,
        enabled=is_main,
        resume_from=start if (resume or not created) else None,
    )
    tester = MetaTester(cfg, learner, train_data, mesh) if cfg.eval.datasets else None
    if is_main and tester is not None and tester.baseline_lrs:
        writer.write({"generation": start, "baseline_lrs": tester.baseline_lrs}, start)

    K = cfg.es.generations_per_call
    bar = tqdm(
        total=cfg.es.generations, initial=start, disable=not is_main, unit="gen", dynamic_ncols=True
    )
    last_eval, last_eval_gen = None, None
    skipped, warned = 0, False
    g = start
    multi = jax.process_count() > 1
    watchdog = PeerWatchdog(cfg.distributed_heartbeat_timeout_s).start() if multi else None
    t_start = time.time()
    try:
        for g in range(start, cfg.es.generations, K):
            t0 = time.time()
            state, metrics = block(state, k_run, g, *trainer.args)
            metrics = to_host(metrics)  # blocks on the result: safe in multi-process runs
            dt = time.time() - t0
            skipped = _check_finite(metrics, g, skipped, cfg.max_skipped)
            warned = warned or _warn_if_diverging(metrics, g, cfg.data.num_classes)
            for i in range(K):
                rec = {k: v[i].item() for k, v in metrics.items()}
                rec.update(generation=g + i + 1, generations_per_s=K / dt)
                writer.write(rec, g + i + 1)
            bar.update(K)
            bar.set_postfix(meta_loss=f"{metrics['meta_loss'][-1]:.4f}")
            done = g + K
            if done % cfg.checkpoint_every == 0 or done == cfg.es.generations:
                ckpt.save(done, state)
                saved[0] = done
            if tester is not None and cfg.eval.every and done % cfg.eval.every == 0:
                last_eval = _meta_test(tester, trainer.mean(state), run_dir, done, writer, is_main)
                last_eval_gen = done
        final = max(start, cfg.es.generations)
        if tester is not None and last_eval_gen != final:
            last_eval = _meta_test(tester, trainer.mean(state), run_dir, final, writer, is_main)
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"interrupted in generation {g + 1}; {_last_checkpoint_note(saved[0], run_dir)}"
        ) from None
    except (jax.errors.JaxRuntimeError, RuntimeError) as e:
        if multi:  # a lost peer: one line naming it, not a stall and a C++ abort
            peer_failed(e, watchdog)
        raise
    finally:
        if watchdog is not None:
            watchdog.stop()
        set_failure_note(lambda: "")
        bar.close()
        writer.close()
        ckpt.close()

    if is_main:
        plots.plot_meta_loss(read_metrics(run_dir), run_dir / "meta_loss.png")
        previous = run_dir / "summary.json"
        earlier = json.loads(previous.read_text())["wall_s"] if resume and previous.exists() else 0
        summary = {"generations": cfg.es.generations, "wall_s": earlier + time.time() - t_start}
        if last_eval is not None:
            summary.update(last_eval)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        print(
            f"done: {run_dir} (metrics.jsonl, checkpoints/, meta_test.png, meta_loss.png)",
            flush=True,
        )
    return run_dir


def unravel_meta_params(learner: Learner, task: TaskSpec, flat) -> Any:
    """The meta-parameter pytree of ``learner`` on ``task`` from its flat vector ``flat``
    (as checkpoints and shipped learners store it), as uncommitted arrays usable with
    data on any devices."""
    from jax.flatten_util import ravel_pytree

    like = jax.eval_shape(lambda k: learner.meta_init(k, task), jax.random.PRNGKey(0))
    _, unravel = ravel_pytree(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), like))
    flat = np.asarray(flat)
    size = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(like))
    if flat.shape != (size,):
        raise ValueError(
            f"{flat.size} stored meta-parameters do not fit learner {learner.name!r} on "
            f"{task} ({size} expected); the config does not match the parameters"
        )
    return unravel(jax.numpy.asarray(flat))


def restore_run(run_dir: str | Path, step: int | None = None):
    """A run's config, learner, mean meta-parameters and the raw checkpoint dict (latest
    checkpoint by default): ``(config, learner, meta_params, raw)``."""
    from vsml_jax.config import load_config

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    learner = build_learner(cfg)
    task = TaskSpec(**json.loads((run_dir / "task.json").read_text()))
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
    """The final meta-parameters of the run ``cfg.init_from``, checked against ``like``
    (this run's freshly initialised meta-parameters): same learner, same pytree, same shapes.
    """
    source = Path(cfg.init_from)
    if not (source / "config.yaml").is_file() or not (source / "task.json").is_file():
        raise FileNotFoundError(
            f"init_from: {source} is not a run directory (it needs config.yaml, task.json and "
            "checkpoints/); pass the directory a training run printed as 'run dir'"
        )
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


def _last_checkpoint_note(step: int | None, run_dir: Path) -> str:
    """Where to resume from. ``step`` is tracked by the loop: asking orbax here could wait
    on a lock of a save that a lost peer will never finish."""
    if step is None:
        return f"no checkpoint was written yet in {run_dir}"
    where = Path(run_dir).absolute() / "checkpoints" / str(step)
    return f"the last checkpoint is {where}; continue with --resume {run_dir}"


def _check_finite(metrics: dict, start: int, skipped: int, max_skipped: int) -> int:
    """Report skipped updates; returns the count of consecutive skips so far, and stops
    the run once it reaches ``max_skipped`` (the state is the last finite one)."""
    bad = np.asarray(metrics["skipped"] if "skipped" in metrics else metrics["nonfinite"])
    nonfinite = np.asarray(metrics["nonfinite"])
    for i in range(len(bad)):
        if not bad[i]:
            skipped = 0
            continue
        skipped += 1
        log.warning(
            "generation %d: update skipped (%s); the previous meta-parameters are kept",
            start + i + 1,
            f"{int(nonfinite[i])} members had non-finite fitness"
            if nonfinite[i]
            else "the updated ES state was not finite",
        )
        if skipped >= max_skipped:
            raise NonFiniteFitnessError(
                f"{skipped} consecutive updates up to generation {start + i + 1} were "
                "non-finite and skipped, so the meta-parameters stopped changing; lower "
                "es.sigma or es.lr, or check the data (max_skipped sets the limit)"
            )
    return skipped


# a mean online loss this many times chance level (ln num_classes) means the run diverged
DIVERGED_FACTOR = 5.0


def _warn_if_diverging(metrics: dict, start: int, num_classes: int) -> bool:
    """Warn (and return True) when the meta-loss is far above chance level."""
    chance = float(np.log(max(num_classes, 2)))
    loss = np.asarray(metrics["meta_loss"], dtype=np.float64)
    high = np.nonzero(np.isfinite(loss) & (loss > DIVERGED_FACTOR * chance))[0]
    if not len(high):
        return False
    i = int(high[0])
    log.warning(
        "generation %d: meta-loss %.3g is over %g x chance level (%.3g); the run is "
        "diverging: lower es.lr / grad.lr or es.sigma",
        start + i + 1,
        loss[i],
        DIVERGED_FACTOR,
        chance,
    )
    return True


def _meta_test(tester, mean_params, run_dir: Path, generation: int, writer, is_main) -> dict:
    summary, curves = tester(mean_params)
    if is_main:
        writer.write({"generation": generation, **summary}, generation)
        out = run_dir / "eval"
        out.mkdir(exist_ok=True)
        np.savez_compressed(
            out / f"curves_gen{generation:06d}.npz",
            **{f"{d}|{name}": acc for d, by in curves.items() for name, acc in by.items()},
        )
        title = f"meta-test after {generation} generations"
        plots.plot_accuracy_curves(curves, run_dir / "meta_test.png", title=title)
        plots.plot_accuracy_curves(curves, run_dir / "meta_test_logx.png", title=title, log_x=True)
        line = ", ".join(
            f"{k.removeprefix('eval/')}={v:.3f}"
            for k, v in summary.items()
            if k.endswith("/mean_acc")
        )
        tqdm.write(f"[gen {generation}] meta-test mean online accuracy: {line}")
    return summary
