"""The meta-training loop over a :class:`~vsml_jax.meta.base.Trainer`: jitted blocks
of steps (ES generations or meta-gradient steps), logs, checkpoints, meta-tests.

Nothing inside a block of steps returns to Python. Between blocks the
loop logs metrics, saves checkpoints and runs the meta-test evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.flatten_util import ravel_pytree
from tqdm.auto import tqdm

from vsml_jax import plots
from vsml_jax.build import build_learner, check_names, episode_spec, load_data, run_key, task_spec
from vsml_jax.config import RunConfig
from vsml_jax.data.episodes import DeviceDataset
from vsml_jax.evaluation import MetaTest
from vsml_jax.learners.base import Learner, PyTree, TaskSpec
from vsml_jax.loading import initial_meta_params
from vsml_jax.meta.base import Trainer
from vsml_jax.meta.trainer import make_trainer
from vsml_jax.runtime import interrupts, rundir
from vsml_jax.runtime.checkpoint import Checkpointer
from vsml_jax.runtime.devices import (
    PeerWatchdog,
    check_population,
    peer_failed,
    population_mesh,
    replicate,
    replicated,
    set_failure_note,
    setup_devices,
    to_host,
)
from vsml_jax.runtime.files import save_npz
from vsml_jax.runtime.metrics import MetricsWriter, read_metrics

log = logging.getLogger(__name__)


class NonFiniteFitnessError(FloatingPointError):
    """Too many consecutive steps had their update skipped as non-finite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C: the message says where the last checkpoint is."""


# --------------------------------------------------------------------------- the loop


class Job(NamedTuple):
    """What :func:`train` trains: a learner on its task family from ``meta_params`` with
    ``trainer`` (any :class:`~vsml_jax.meta.base.Trainer`); ``train_data`` are the
    meta-training data (the meta-test's baselines tune their learning rate on them)."""

    learner: Learner
    task: TaskSpec
    meta_params: PyTree
    trainer: Trainer
    train_data: DeviceDataset | None = None


def build_job(cfg: RunConfig, train_data, mesh) -> Job:
    """The job a run config names on ``train_data``, from a fresh meta-initialisation.

    ``train_data`` may be abstract (``jax.ShapeDtypeStruct`` leaves) and ``mesh`` may span
    devices of another machine, e.g. a TPU topology: :mod:`benchmarks.plan` compiles the
    program of :func:`train` ahead of time this way (:func:`compiled_block`)."""
    learner = build_learner(cfg)
    task = task_spec(cfg, train_data)
    spec = episode_spec(cfg, cfg.data.episode_length)
    meta_params = learner.meta_init(run_key(cfg.seed, "meta_init"), task)
    trainer = make_trainer(cfg, learner, meta_params, train_data, spec, mesh)
    return Job(learner, task, meta_params, trainer, train_data)


def default_job(cfg: RunConfig, mesh) -> Job:
    """The job a run config names: ``cfg.learner`` meta-trained by ``cfg.trainer`` (ES
    or meta-gradients) on episodes of ``cfg.data``, from a fresh meta-initialisation
    (or ``cfg.init_from``; same structure, so the trainer built for it still fits)."""
    job = build_job(cfg, load_data(cfg, cfg.data.train_sets, "train", mesh), mesh)
    if cfg.init_from:
        job = job._replace(meta_params=initial_meta_params(cfg, job.meta_params))
    return job


def compiled_block(trainer: Trainer, mesh):
    """``trainer.block`` jitted as :func:`train` runs it: state and metrics replicated."""
    rep = replicated(mesh)
    return jax.jit(trainer.block, out_shardings=(rep, rep))


def train(
    cfg: RunConfig,
    resume: bool | str | Path = False,
    run_dir: str | Path | None = None,
    job: Callable[[RunConfig, Any], Job] = default_job,
) -> Path:
    """Meta-train ``cfg`` into ``run_dir`` (default: a new ``runs/<name>/<stamp>``).

    With ``resume`` (True: the latest run of ``cfg.name``, or a run dir) continue
    from that run's last checkpoint; ``cfg`` may differ from the run's saved config only
    in the keys of :data:`vsml_jax.runtime.rundir.RESUME_SAFE`. Process 0 holds an
    exclusive lock on the run dir for the whole run (:func:`rundir.open_run`).
    ``job(cfg, mesh)`` builds what is trained (default: what ``cfg`` names).
    """
    check_names(cfg)
    setup_devices(cfg)
    if resume:
        root = Path(cfg.out_dir) / cfg.name
        run_dir = rundir.latest_run_dir(root) if resume is True else Path(resume)
    root = Path(cfg.out_dir) / cfg.name
    with rundir.open_run(root, cfg.seed, run_dir, resume=bool(resume)) as run_dir:
        if resume:  # before anything is written: the saved config is the reference
            rundir.check_resume_config(rundir.saved_config(run_dir), cfg, run_dir)
        if jax.process_index() == 0:
            print(f"run dir: {run_dir}", flush=True)
        return train_in(cfg, run_dir, bool(resume), job)


def train_in(cfg: RunConfig, run_dir: Path, resumed: bool = False, job=default_job) -> Path:
    """Meta-train ``cfg`` in the run dir that :func:`rundir.open_run` opened (and the
    devices :func:`~vsml_jax.runtime.cli.setup_devices` set up): the training loop of
    :func:`train` and of ``python -m experiments.es_mnist``."""
    is_main = jax.process_index() == 0
    mesh = population_mesh()
    if cfg.trainer == "es":
        check_population(cfg.es.population_size, mesh)
    return _train(cfg, resumed, run_dir, mesh, is_main, job(cfg, mesh))


def _train(cfg: RunConfig, resume: bool, run_dir: Path, mesh, is_main: bool, job: Job) -> Path:
    learner, task, meta_params, trainer, train_data = job
    k_es, k_run = (run_key(cfg.seed, tag) for tag in ("es", "run"))
    num_params = sum(x.size for x in jax.tree.leaves(meta_params))
    if num_params == 0:
        raise ValueError(
            f"learner {learner.name!r} has no meta-parameters, so there is nothing to "
            "meta-train; evaluate it directly (vsml_jax.evaluation)"
        )
    log.info("learner %s: %d meta-parameters, task %s", learner.name, num_params, task)
    block = compiled_block(trainer, mesh)
    total, K, what = cfg.schedule
    unit = what.split(".")[1]  # "generation" or "step"
    state = replicate(to_host(trainer.init(meta_params, k_es)), mesh)
    # a checkpoint holds the trainer's state and, for loading without the trainer, the
    # flat mean meta-parameters (a few thousand numbers)
    checkpoint = lambda state: {"state": state, "mean": ravel_pytree(trainer.mean(state))[0]}  # noqa: E731
    ckpt = Checkpointer(run_dir / "checkpoints", keep=cfg.keep_checkpoints)
    start = 0
    latest = ckpt.latest_step()
    saved = [latest]  # the last checkpoint step, for the failure and interrupt messages
    set_failure_note(lambda: _last_checkpoint_note(saved[0], run_dir))
    if latest is not None:
        if not resume:
            ckpt.close()
            raise FileExistsError(f"{run_dir} already has checkpoints; pass --resume")
        if latest % K:
            ckpt.close()
            raise ValueError(
                f"checkpoint {latest} is not a multiple of {what}s_per_call={K}; "
                f"resume with the {what}s_per_call the run was started with"
            )
        try:
            state = ckpt.restore(latest, checkpoint(state))["state"]
        except BaseException:
            ckpt.close()
            raise
        start = latest
        print(f"resumed from {unit} {start} ({ckpt.directory / str(latest)})", flush=True)
    elif resume and is_main:
        rows = len(read_metrics(run_dir))
        print(
            f"--resume {run_dir}: it has no checkpoint, so training restarts from {unit} 0"
            + (f"; its {rows} old metrics rows were dropped" if rows else ""),
            flush=True,
        )
    if is_main:  # written once the config has proved loadable (and the checkpoint restorable)
        rundir.write_config(run_dir, cfg)
        rundir.write_provenance(run_dir)
        (run_dir / "task.json").write_text(json.dumps(dataclasses.asdict(task)))

    writer = MetricsWriter(
        run_dir,
        tensorboard=cfg.tensorboard,
        enabled=is_main,
        resume_from=start if resume or (run_dir / "metrics.jsonl").exists() else None,
    )
    tester = MetaTest.from_config(cfg, train_data, mesh) if cfg.eval.datasets else None
    if is_main and tester is not None and tester.baseline_lrs:
        writer.write({"generation": start, "baseline_lrs": tester.baseline_lrs}, start)

    bar = tqdm(
        total=total,
        initial=start,
        disable=not is_main,
        unit=unit[:3] if cfg.trainer == "es" else unit,
        dynamic_ncols=True,
    )
    last_eval, last_eval_gen = None, None
    skipped, warned = 0, False
    g = start
    multi = jax.process_count() > 1
    watchdog = PeerWatchdog(cfg.distributed_heartbeat_timeout_s).start() if multi else None
    t_start = time.time()
    try:
        for g in range(start, total, K):
            t0 = time.time()
            state, metrics = block(state, k_run, g, *trainer.args)
            metrics = to_host(metrics)  # blocks on the result: safe in multi-process runs
            interrupts.check()  # a Ctrl-C that a gc callback swallowed
            dt = time.time() - t0
            skipped = check_finite(metrics, g, skipped, cfg.max_skipped)
            if trainer.cross_entropy and not warned:
                warned = _warn_if_diverging(metrics, g, cfg.data.num_classes)
            for i in range(K):
                rec = {k: v[i].item() for k, v in metrics.items()}
                rec.update(generation=g + i + 1, steps_per_s=K / dt)
                writer.write(rec, g + i + 1)
            bar.update(K)
            bar.set_postfix(meta_loss=f"{metrics['meta_loss'][-1]:.4f}")
            done = g + K
            if done % cfg.checkpoint_every == 0 or done == total:
                ckpt.save(done, checkpoint(state))
                saved[0] = done
            if tester is not None and cfg.eval.every and done % cfg.eval.every == 0:
                last_eval = _meta_test(
                    tester, learner, trainer.mean(state), run_dir, done, writer, is_main
                )
                last_eval_gen = done
        final = max(start, total)
        if tester is not None and last_eval_gen != final:
            last_eval = _meta_test(
                tester, learner, trainer.mean(state), run_dir, final, writer, is_main
            )
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"interrupted in {unit} {g + 1}; {_last_checkpoint_note(saved[0], run_dir)}"
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
        summary = {"steps": total, "wall_s": earlier + time.time() - t_start}
        if last_eval is not None:
            summary.update(last_eval)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        print(
            f"done: {run_dir} (metrics.jsonl, checkpoints/, meta_test.png, meta_loss.png)",
            flush=True,
        )
    return run_dir


def _last_checkpoint_note(step: int | None, run_dir: Path) -> str:
    """Where to resume from. ``step`` is tracked by the loop: asking orbax here could wait
    on a lock of a save that a lost peer will never finish."""
    if step is None:
        return f"no checkpoint was written yet in {run_dir}"
    where = Path(run_dir).absolute() / "checkpoints" / str(step)
    return f"the last checkpoint is {where}; continue with --resume {run_dir}"


def check_finite(metrics: dict, start: int, skipped: int, max_skipped: int) -> int:
    """Report skipped updates; returns the count of consecutive skips so far, and stops
    the run once it reaches ``max_skipped`` (the state is the last finite one)."""
    bad = np.asarray(metrics["skipped"])
    nonfinite = np.asarray(metrics.get("nonfinite", np.zeros_like(bad)))
    for i in range(len(bad)):
        if not bad[i]:
            skipped = 0
            continue
        skipped += 1
        log.warning(
            "step %d: update skipped (%s); the previous meta-parameters are kept",
            start + i + 1,
            f"{int(nonfinite[i])} members had non-finite fitness"
            if nonfinite[i]
            else "the update was not finite",
        )
        if skipped >= max_skipped:
            raise NonFiniteFitnessError(
                f"{skipped} consecutive updates up to step {start + i + 1} were "
                "non-finite and skipped, so the meta-parameters stopped changing; lower "
                "es.sigma / es.lr / grad.lr, or check the data (max_skipped sets the limit)"
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


def _meta_test(tester, learner, params, run_dir: Path, step: int, writer, is_main) -> dict:
    rows, curves = tester(learner, params)
    summary = {
        f"eval/{r['dataset']}/{r['learner'].split(' ')[0]}/{k}": v
        for r in rows
        for k, v in r.items()
        if k not in ("dataset", "learner")
    }
    if is_main:
        writer.write({"generation": step, **summary}, step)
        out = run_dir / "eval"
        out.mkdir(exist_ok=True)
        save_npz(
            out / f"curves_gen{step:06d}.npz",
            **{f"{d}|{name}": acc for d, by in curves.items() for name, acc in by.items()},
        )
        title = f"meta-test after {step} steps"
        plots.plot_accuracy_curves(curves, run_dir / "meta_test.png", title=title)
        plots.plot_accuracy_curves(curves, run_dir / "meta_test_logx.png", title=title, log_x=True)
        line = ", ".join(
            f"{k.removeprefix('eval/')}={v:.3f}"
            for k, v in summary.items()
            if k.endswith("/mean_acc")
        )
        tqdm.write(f"[step {step}] meta-test mean online accuracy: {line}")
    return summary
