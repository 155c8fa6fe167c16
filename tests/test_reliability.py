"""Runs that cannot be corrupted: resume checks, locked run dirs, non-finite guards, errors.

Most tests reuse one tiny finished run (``finished``) and fail before any training;
see docs/RELIABILITY.md for what each shows.
"""

import dataclasses
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import xla_flags
from tests.marks import needs_kernel
from tests.tiny import PRESET, TINY_SUM
from vsml_jax.build import load_run_config
from vsml_jax.config import ConfigError, ESConfig, load_config
from vsml_jax.runtime import cli, rundir
from vsml_jax.train import NonFiniteFitnessError, train
from vsml_jax.vsml import kernel

ROOT = Path(__file__).resolve().parents[1]

TINY = [*TINY_SUM, "es.generations=10"]


def tiny(out_dir, *extra):
    return load_config(PRESET, [*TINY, f"out_dir={out_dir}", *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 10-generation run (checkpoints 5 and 10); copy it before changing it."""
    return train(tiny(tmp_path_factory.mktemp("runs")))


@pytest.fixture
def run_copy(finished, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(finished, dst)
    return dst


# --------------------------------------------------------------------------- 1. resume config


@pytest.mark.parametrize(
    "override,key",
    [
        ("network.cell.hidden=8", "network.cell.hidden"),
        ("learner=hebbian", "learner"),
        ("es.generations_per_call=2", "es.generations_per_call"),
        ("seed=1", "seed"),
        ("init_from=/elsewhere", "init_from"),
    ],
)
def test_resume_refuses_a_structural_change_and_keeps_the_config(run_copy, override, key):
    before = (run_copy / "config.yaml").read_bytes()
    cfg = load_config(run_copy / "config.yaml", [override, "checkpoint_every=10"])
    with pytest.raises(ConfigError, match=rf"--resume .*: {key} was .* cannot change on resume"):
        train(cfg, resume=run_copy)
    assert (run_copy / "config.yaml").read_bytes() == before
    assert not (run_copy / "config.yaml.tmp").exists()


def test_resume_config_check_allows_only_safe_keys():
    base = load_config(PRESET, TINY)
    for ok in ("es.generations=20", "eval.every=5", "eval.num_episodes=2", "keep_checkpoints=9"):
        rundir.check_resume_config(base, load_config(PRESET, [*TINY, ok]), Path("r"))
    for bad in ("es.sigma=0.1", "data.episode_length=12", "max_skipped=3", "cpu_devices=2"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            rundir.check_resume_config(base, load_config(PRESET, [*TINY, bad]), Path("r"))


@pytest.mark.slow
def test_resume_with_a_safe_change_a_torn_metrics_line_and_no_duplicates(run_copy, caplog):
    with (run_copy / "metrics.jsonl").open("a") as f:
        f.write('{"generation": 11, "meta_lo')  # a crash in the middle of a write
    cfg = load_config(run_copy / "config.yaml", ["es.generations=15"])
    train(cfg, resume=run_copy)
    assert "torn last line" in caplog.text
    assert load_config(run_copy / "config.yaml").es.generations == 15  # written after restore
    gens = [json.loads(x)["generation"] for x in (run_copy / "metrics.jsonl").open()]
    assert gens == list(range(1, 16))


@pytest.mark.slow
def test_resume_without_checkpoint_restarts_and_drops_old_metrics(run_copy, capsys):
    shutil.rmtree(run_copy / "checkpoints")
    cfg = load_config(run_copy / "config.yaml", ["es.generations=5"])
    train(cfg, resume=run_copy)
    out = capsys.readouterr().out
    assert "no checkpoint, so training restarts from generation 0" in out
    assert "its 10 old metrics rows were dropped" in out
    gens = [json.loads(x)["generation"] for x in (run_copy / "metrics.jsonl").open()]
    assert gens == [1, 2, 3, 4, 5]


def test_metrics_torn_last_line_is_dropped_but_a_bad_middle_line_names_the_file(tmp_path):
    from vsml_jax.runtime.metrics import read_metrics

    (tmp_path / "metrics.jsonl").write_text('{"generation": 1}\n{"generation": 2')
    assert read_metrics(tmp_path) == [{"generation": 1}]
    (tmp_path / "metrics.jsonl").write_text('{"gen\n{"generation": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 1, is not JSON"):
        read_metrics(tmp_path)


# --------------------------------------------------------------------------- 2. non-finite


def test_nan_lr_keeps_the_previous_es_state():
    import jax
    import jax.numpy as jnp

    from vsml_jax.meta import es

    x0 = {"w": jnp.zeros(3)}
    strategy = es.make_strategy(ESConfig(population_pairs=4, lr=float("nan")), x0)
    state = es.init_strategy(strategy, jax.random.PRNGKey(0), x0)
    quadratic = lambda pop, key: jnp.sum((pop["w"] - 1.0) ** 2, axis=1)
    new, metrics = jax.jit(es.make_generation(strategy, quadratic))(state, jax.random.PRNGKey(1))
    assert int(metrics["skipped"]) == 1 and int(metrics["nonfinite"]) == 0
    np.testing.assert_array_equal(new.mean, state.mean)
    assert np.isfinite(np.asarray(new.mean)).all()


@pytest.mark.slow
def test_run_stops_after_consecutive_skips_and_never_checkpoints_nan(tmp_path):
    cfg = tiny(tmp_path, "max_skipped=3")
    # es.lr=nan is refused at config time; force it past the check to reach the guard
    object.__setattr__(cfg, "es", dataclasses.replace(cfg.es, lr=math.nan))
    with pytest.raises(NonFiniteFitnessError, match="3 consecutive updates"):
        train(cfg)
    assert not list(tmp_path.glob("quickstart/*/checkpoints/[0-9]*"))


@pytest.mark.parametrize(
    "override,message",
    [
        ("es.sigma=0", "es.sigma must be a finite number > 0"),
        ("es.sigma=-0.1", "es.sigma must be a finite number > 0"),
        ("es.lr=.nan", "es.lr: expected a finite number, got nan"),
        ("es.lr=0", "es.lr must be a finite number > 0"),
        ("grad.lr=.inf", "grad.lr: expected a finite number, got inf"),
        ("cpu_devices=-2", "cpu_devices must be >= 0"),
        ("max_skipped=0", "max_skipped must be >= 1"),
        ("learner_args={hidden: abc}", "learner_args.hidden: expected an integer"),
        ("learner_args={hidden: -3}", "learner_args.hidden must be >= 1"),
        ("learner_args={hidden: 3, hidden: 4}", "duplicate key 'hidden'"),
    ],
)
def test_bad_values_are_config_errors(override, message):
    extra = ["learner=meta_rnn"] if "learner_args" in override else []
    with pytest.raises(ConfigError, match=message):
        load_run_config(None, [*extra, override])


def test_numbers_parse_as_python_float_does_and_must_be_finite():
    for text, value in (("1e30", 1e30), ("1.0e30", 1e30), ("1e-3", 1e-3), ("2E-2", 0.02)):
        assert load_config(None, [f"es.sigma={text}"]).es.sigma == value
    cfg = load_run_config(None, ["learner=sgd", "learner_args={lr: 1e-3}"])
    assert cfg.learner_args == {"lr": 1e-3}  # converted: the factory gets a float
    for text in ("inf", "-inf", "nan", "1e999"):
        with pytest.raises(ConfigError, match="es.sigma: expected a finite number, got "):
            load_config(None, [f"es.sigma={text}"])
    with pytest.raises(ConfigError, match="es.sigma: expected a number, got '1e3x'"):
        load_config(None, ["es.sigma=1e3x"])


def test_duplicate_key_in_a_yaml_preset(tmp_path):
    (tmp_path / "p.yaml").write_text("es:\n  sigma: 0.1\n  sigma: 0.2\n")
    with pytest.raises(ConfigError, match="not valid YAML: duplicate key 'sigma' \\(line 3\\)"):
        load_config(tmp_path / "p.yaml")


def test_diverging_meta_loss_warns(caplog):
    from vsml_jax.train import _warn_if_diverging

    assert not _warn_if_diverging({"meta_loss": np.array([2.3, 2.2])}, 0, 10)
    assert _warn_if_diverging({"meta_loss": np.array([2.3, 1e6])}, 10, 10)
    assert "generation 12: meta-loss 1e+06 is over 5 x chance level" in caplog.text


# --------------------------------------------------------------------------- 3. one writer


def test_second_writer_is_refused_naming_the_holder(run_copy):
    cfg = load_config(run_copy / "config.yaml", ["es.generations=15"])
    with rundir.RunLock(run_copy):
        with pytest.raises(rundir.RunDirError, match=f"in use by process {os.getpid()} on "):
            train(cfg, resume=run_copy)
    assert len((run_copy / "metrics.jsonl").read_text().splitlines()) == 10


def test_lock_is_released_when_its_holder_dies(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from vsml_jax.runtime.rundir import RunLock; "
            f"RunLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(rundir.RunDirError, match=f"in use by process {holder.pid} "):
            rundir.RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    rundir.RunLock(tmp_path).acquire().release()


def test_runs_started_in_the_same_second_get_their_own_dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir.time, "time", lambda: 1_800_000_000.0)
    cfg = tiny(tmp_path)
    dirs = [rundir.new_run_dir(Path(cfg.out_dir) / cfg.name, cfg.seed) for _ in range(3)]
    assert len(set(dirs)) == 3 and all(d.is_dir() for d in dirs)
    assert [d.name.split("seed0")[1] for d in dirs] == ["", "-2", "-3"]
    assert rundir.sorted_runs([dirs[2], dirs[0], dirs[1]]) == dirs


def test_creating_the_run_dir_leaves_the_cpu_device_count_settable(tmp_path):
    """Experiments create their run dir before ``configure_cpu_devices``; that must not
    start JAX's backends, or the configured device count is silently ignored."""
    code = (
        "import sys, jax\n"
        "from vsml_jax.runtime.rundir import new_run_dir\n"
        "new_run_dir(sys.argv[1], 0)\n"
        "jax.config.update('jax_num_cpu_devices', 3)\n"
        "assert len(jax.devices()) == 3, jax.devices()\n"
    )
    cmd = ["timeout", "-s", "KILL", "120", sys.executable, "-c", code, str(tmp_path)]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_latest_run_sorts_suffixes_numerically(tmp_path):
    names = ["20260101-000000-seed0", "20260101-000000-seed0-2", "20260101-000000-seed0-10"]
    assert [p.name for p in rundir.sorted_runs(tmp_path / n for n in reversed(names))] == names


# --------------------------------------------------------------------------- 5. device count


def test_checkpoint_of_two_devices_loads_on_one(tmp_path):
    import jax

    from vsml_jax.runtime.checkpoint import Checkpointer

    devices = 2 * jax.device_count()  # more devices than this process has
    code = (
        "import numpy as np; from vsml_jax.runtime.checkpoint import Checkpointer; "
        "from vsml_jax.runtime.devices import population_mesh, replicate; "
        f"c = Checkpointer({str(tmp_path)!r}); "
        "c.save(5, replicate({'mean': np.arange(4.0, dtype=np.float32)}, population_mesh())); "
        "c.close()"
    )
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=xla_flags(f"--xla_force_host_platform_device_count={devices}"),
    )
    subprocess.run(
        ["timeout", "-s", "KILL", "120", sys.executable, "-c", code], cwd=ROOT, env=env, check=True
    )
    ckpt = Checkpointer(tmp_path)
    try:
        np.testing.assert_array_equal(ckpt.restore_raw()["mean"], np.arange(4.0))
    finally:
        ckpt.close()


# --------------------------------------------------------------------------- clear errors


def _main(capsys, *args):
    rc = cli.main(["--config", str(PRESET), *(x for o in TINY for x in ("--set", o)), *args])
    return rc, capsys.readouterr().err.strip().splitlines()


def test_out_dir_that_is_a_file_is_one_line_error(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    rc, err = _main(capsys, "--set", f"out_dir={tmp_path / 'file'}")
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: cannot create the run folder")


def test_failed_start_leaves_no_run_dir(tmp_path, capsys):
    # init_from fails after the data, the learner and the run dir are set up
    rc, err = _main(capsys, "--set", f"out_dir={tmp_path}", "--set", f"init_from={tmp_path}")
    assert rc == 2 and err[-1].startswith(f"error: init_from: {tmp_path} is not a run directory")
    assert [p.name for p in tmp_path.iterdir()] == ["quickstart"]
    assert list((tmp_path / "quickstart").iterdir()) == []


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    rc, err = _main(capsys, "--resume", str(tmp_path))
    assert rc == 2 and err == [
        f"error: --resume {tmp_path}: no config.yaml there, so it is not a run dir (or its "
        "first start failed); start without --resume"
    ]


def test_empty_or_missing_data_dir_is_an_error(tmp_path, monkeypatch):
    from vsml_jax.data.dirs import resolve_data_dirs

    monkeypatch.delenv("VSML_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="from --data-dir is empty"):
        resolve_data_dirs("")
    monkeypatch.setenv("VSML_DATA_DIR", "")
    with pytest.raises(FileNotFoundError, match=r"from \$VSML_DATA_DIR is empty"):
        resolve_data_dirs()
    monkeypatch.setenv("VSML_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=r"nope \(from \$VSML_DATA_DIR\) does not exist"):
        resolve_data_dirs()


def test_an_explicit_data_dir_without_the_dataset_is_an_error_naming_both(tmp_path, capsys):
    from vsml_jax.data import load_split

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as e:
        load_split("mnist", "test", data_dir=empty)
    assert str(e.value).startswith("Dataset 'mnist' not found: tried TFDS mnist:3.0.1 ")
    assert f"format) in {empty} (the --data-dir given: no other dir is searched)" in str(e.value)
    over = ("data.train_sets=[mnist]", "data.input_dim=null", f"out_dir={tmp_path}")
    rc, err = _main(capsys, "--data-dir", str(empty), *(x for o in over for x in ("--set", o)))
    assert rc == 2 and len(err) == 1 and f"in {empty} (the --data-dir given" in err[0], err


@pytest.mark.needs_data("mnist")
def test_corrupt_array_record_names_the_file_and_the_prepare_command(tmp_path):
    from vsml_jax.data import load_split
    from vsml_jax.data.dirs import shared_tfds_dirs

    src = shared_tfds_dirs()[0] / "mnist" / "3.0.1"
    dst = tmp_path / "tfds" / "mnist" / "3.0.1"
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if "train" not in f.name:
            shutil.copy(f, dst / f.name)
    record = next(dst.glob("*test.array_record*"))
    record.write_bytes(record.read_bytes()[:5000])
    with pytest.raises(ValueError) as e:
        load_split("mnist", "test", data_dir=tmp_path / "tfds", cache_dir=tmp_path / "cache")
    assert str(record) in str(e.value)
    assert "python -m vsml_jax.data prepare mnist" in str(e.value)


def test_cross_dataset_unknown_variant_tag():
    from experiments.cross_dataset.protocol import CrossDatasetConfig

    preset = ROOT / "experiments/cross_dataset/configs/cross_dataset.yaml"
    with pytest.raises(ConfigError, match="unknown LA variant 'vsml@foo'"):
        load_config(preset, ["las=[vsml@foo]"], cls=CrossDatasetConfig)


def test_cached_arrays_are_atomic_and_a_corrupt_one_is_named(tmp_path):
    from vsml_jax.runtime.files import load_npz, save_npz

    path = tmp_path / "meta_test" / "vsml__mnist.npz"
    save_npz(path, mnist=np.ones((2, 3)))
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    np.testing.assert_array_equal(load_npz(path)["mnist"], np.ones((2, 3)))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match=f"cached arrays {path} are corrupt"):
        load_npz(path)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--grid", "abc"], "--grid: expected AxB"),
        (["--populations", "3"], "--populations must be even"),
        (["--T", "0"], "--T must be >= 1"),
    ],
)
def test_bench_bad_arguments(args, message, capsys):
    from benchmarks.bench import main

    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.needs_data("mnist")
def test_bench_skips_the_fused_rows_where_there_is_no_kernel(monkeypatch, capsys):
    from benchmarks.bench import SKIPPED, main

    monkeypatch.setattr(kernel, "_has_avx512", lambda: False)
    kernel._load.cache_clear()
    try:
        args = ["--one", "fused", "8", "--T", "2", "--repeats", "1", "--grid", "16x10"]
        assert main(args) == SKIPPED
    finally:
        kernel._load.cache_clear()
    assert capsys.readouterr().err.strip() == f"skipped: {kernel.NO_AVX512}"


@pytest.mark.parametrize(
    "tool,args,message",
    [
        ("profile_step", ["--grid", "abc"], "--grid must look like 784x10"),
        ("profile_step", ["--population", "3"], "--population must be even"),
        ("profile_step", ["--T", "0"], "must be >= 1"),
        ("fused_tick", ["--grid", "abc"], "--grid must look like 784x10"),
        ("fused_tick", ["--ticks", "0"], "--ticks must be >= 1"),
        ("fused_tick", ["--devices", "999"], "--devices 999: only"),
    ],
)
def test_profile_step_and_fused_tick_bad_arguments(tool, args, message, capsys):
    main = __import__(f"benchmarks.{tool}", fromlist=["main"]).main
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--population", "3"], "--population must be even"),
        (["--T", "0"], "--T must be >= 1"),
        (["--devices", "999"], "--devices 999: only"),
        ([], "is not a checkout of the paper's code (no models.py, vsml_layers.py"),
    ],
)
def test_reference_bench_bad_arguments(args, message, tmp_path, capsys):
    from benchmarks.reference_bench import main

    (tmp_path / "config.py").write_text("")  # a directory with some, not all, of its files
    with pytest.raises(SystemExit) as e:
        main(["--ref-dir", str(tmp_path), "--devices", "0", *args])
    assert e.value.code == 2 and message in capsys.readouterr().err


@needs_kernel
def test_fused_tick_kernels_agree_with_the_xla_tick(capsys):
    from benchmarks.fused_tick import main

    # 20 x 3: one full and one partial 16-cell block per row
    assert main(["--grid", "20x3", "--ticks", "3", "--repeats", "1", "--devices", "0"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["impl"] for x in lines] == ["xla", "fused", "fused_rational"]
    assert all(x["max_abs_diff_h"] < 1e-5 and x["max_abs_diff_c"] < 1e-5 for x in lines)
    assert lines[1]["max_abs_diff_h"] > 0  # a different summation order: not the same code


def test_profile_step_sums_xla_ops_and_skips_loops_and_host_events(tmp_path):
    import gzip
    import json

    from benchmarks.profile_step import op_times

    run = tmp_path / "plugins" / "profile" / "2026_01_01"
    run.mkdir(parents=True)
    op = lambda name, dur: {"ph": "X", "name": name, "dur": dur, "args": {"hlo_op": name}}  # noqa: E731
    events = [
        op("dot.4", 120.0),
        op("dot.4", 130.0),
        op("tanh_fusion", 200.0),
        op("while.12", 8000.0),  # a loop: its time is its body's ops
        {"ph": "X", "name": "ThunkExecutor::Execute", "dur": 9000.0},
        {"ph": "X", "name": "CommonPjRtLoadedExecutable::ExecuteHelper", "dur": 30.0},
        {"ph": "X", "name": "end: tanh_fusion", "dur": 0.2, "args": {"_src": "thunk"}},
        {"ph": "X", "name": "$api.py:2479 block_until_ready", "dur": 9500.0},
        {"ph": "M", "name": "thread_name"},
    ]
    with gzip.open(run / "vm.trace.json.gz", "wt") as f:
        json.dump({"traceEvents": events}, f)
    assert op_times(tmp_path) == {"dot.4": (2, 250.0), "tanh_fusion": (1, 200.0)}
    with pytest.raises(FileNotFoundError, match="no jax.profiler trace"):
        op_times(tmp_path / "plugins")


@pytest.mark.slow
def test_ctrl_c_is_one_line_naming_the_last_checkpoint(tmp_path):
    cmd = [sys.executable, "-m", "experiments.es_mnist", "--config", str(PRESET)]
    cmd += [x for o in TINY for x in ("--set", o)]
    cmd += ["--set", "es.generations=100000", "--set", f"out_dir={tmp_path}"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    p = subprocess.Popen(
        ["timeout", "-s", "KILL", "240", *cmd],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 200
    while time.time() < deadline and not list(tmp_path.glob("quickstart/*/checkpoints/5")):
        time.sleep(0.1)
    # timeout(1) does not forward SIGINT: signal the python child itself
    child = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout
    os.kill(int(child.split()[0]), signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted in generation")
    assert "the last checkpoint is " in last and "--resume " in last


def test_resume_picks_the_newest_run_and_refuses_a_folder_that_is_not_one(tmp_path, capsys):
    from experiments.cross_dataset.main import main

    root = tmp_path / "cross_dataset"
    for name in ("20260101-000000-seed0-2", "20260101-000000-seed0-10", "no-config"):
        (root / name).mkdir(parents=True)
        if name != "no-config":
            (root / name / "config.yaml").write_text("{}\n")
    got = rundir.latest_run_dir(root, with_checkpoint=False)
    assert got.name == "20260101-000000-seed0-10"  # natural order, not text order
    assert main(["--resume", str(root / "no-config")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no config.yaml there, so it is not a run dir" in err[0]


# --------------------------------------------------------------------------- bad data


def _session(run_dir):
    import jax

    from vsml_jax import load_learner

    return load_learner(run_dir).start(jax.random.PRNGKey(0), 12, 2, mean=0.0, std=1.0)


def test_a_non_finite_input_is_refused_at_its_step_and_the_state_is_kept(finished):
    xs = np.random.default_rng(0).normal(size=(40, 12)).astype(np.float32)
    ys = np.arange(40) % 2
    clean = _session(finished)
    ref = [clean.run(xs[:20], ys[:20]), clean.run(xs[20:], ys[20:])]
    s = _session(finished)
    s.run(xs[:20], ys[:20])
    bad = xs[20:].copy()
    bad[10, 5] = np.nan
    with pytest.raises(ValueError, match=r"^step 10 of this stream has a non-finite value \(nan"):
        s.run(bad, ys[20:])
    with pytest.raises(ValueError, match="^this input has a non-finite value"):
        s.predict(np.full(12, np.inf))
    with pytest.raises(ValueError, match="^this input has a non-finite value"):
        s.observe(np.full(12, np.nan), 1)
    after = s.run(xs[20:], ys[20:])  # the same as never having seen the bad rows
    np.testing.assert_array_equal(after.probs, ref[1].probs)
    assert np.isfinite(after.probs).all()


def test_float_images_with_nan_are_one_line_for_evaluate():
    from vsml_jax.data.arrays import DatasetArrays

    images = np.zeros((6, 2, 2, 1), np.float32)
    images[4, 1, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"images of mine/test hold non-finite .* in 1 examples, "):
        DatasetArrays("mine", "mine", "test", images, np.zeros(6, np.int32), 2, 0.0, 1.0)


def test_an_empty_stream_and_fractional_labels_are_clear_errors(finished):
    s = _session(finished)
    with pytest.raises(ValueError, match=r"needs a stream of at least one input.*\(0, 12\)"):
        s.run(np.zeros((0, 12)), [])
    x = np.ones((3, 12), np.float32)
    with pytest.raises(ValueError, match=r"label 1.7 \(step 1\) is not a whole number"):
        s.run(x, [0, 1.7, 1])
    with pytest.raises(ValueError, match=r"label 1.7 is not a whole number"):
        s.observe(x[0], 1.7)
    with pytest.raises(ValueError, match="labels must be integers"):
        s.run(x, ["a", "b", "c"])
    assert s.run(x, np.array([0.0, 1.0, 1.0])).accuracy.shape == (3,)  # whole floats are fine


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A copy of the shipped learners that the package reads instead of its own."""
    from vsml_jax import pretrained

    root = tmp_path / "pretrained"
    shutil.copytree(Path(pretrained.__file__).parent, root)
    monkeypatch.setattr(pretrained, "_root", lambda: root, raising=False)
    return root


@pytest.mark.parametrize(
    "damage,suffix,why",
    [
        (lambda b: b[:200], "json", r"is not a valid model card \(JSONDecodeError: "),
        (lambda b: b"{}", "json", r"is not a valid model card \(ValueError: no 'config' mapping"),
        (lambda b: b[:3000], "npz", r"cannot be read \(BadZipFile: "),
        (lambda b: b"", "npz", r"cannot be read \(EOFError: "),
        ("nan", "npz", r"holds 1 non-finite values in 'mean'"),
    ],
)
def test_a_corrupt_shipped_learner_is_one_line_naming_the_file(shipped, damage, suffix, why):
    from vsml_jax import load_learner

    path = shipped / f"clone_backprop_es.{suffix}"
    if damage == "nan":
        arrays = dict(np.load(path))
        arrays["mean"][7] = np.nan
        np.savez(path, **arrays)
    else:
        path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=f"^shipped learner file {path} {why}"):
        load_learner("clone_backprop_es")
    fix = "reinstall vsml-jax (pip install --force-reinstall), or in a git checkout: git checkout"
    with pytest.raises(ValueError, match=re.escape(fix)):
        load_learner("pretrained:clone_backprop_es")


def test_evaluate_of_a_corrupt_shipped_learner_is_one_line(shipped, tmp_path, capsys):
    from vsml_jax.evaluation.cli import main

    (shipped / "clone_backprop_es.npz").write_bytes(b"PK\x03\x04 truncated")
    args = ["--learners", "pretrained:clone_backprop_es", "--datasets", "sum"]
    assert main([*args, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: shipped learner file "), err


def test_a_run_with_a_nan_checkpoint_or_a_corrupt_task_json_is_one_line(run_copy):
    from vsml_jax import load_learner
    from vsml_jax.runtime.checkpoint import Checkpointer, CheckpointError

    ckpt = Checkpointer(run_copy / "checkpoints", keep=5)
    try:
        ckpt.save(15, {"mean": np.full(4, np.nan, np.float32)})
    finally:
        ckpt.close()
    folder = run_copy / "checkpoints" / "15"
    with pytest.raises(CheckpointError, match=f"^checkpoint {folder} is corrupt: its mean meta-p"):
        load_learner(run_copy)
    (run_copy / "task.json").write_text("{")
    with pytest.raises(ValueError, match=f"^{run_copy / 'task.json'} is corrupt \\(JSONDecodeE"):
        load_learner(run_copy / "checkpoints" / "10")


def _flip(path: Path, frac: float = 0.3) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * frac)] ^= 0x55
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("what", ["data", "manifest", "metadata"])
def test_a_bit_flipped_checkpoint_is_one_line_for_resume_and_evaluate(run_copy, what, capsys):
    from vsml_jax.evaluation.cli import main as evaluate

    folder = run_copy / "checkpoints" / "10"
    assert (folder / "vsml_checksum.json").is_file()
    if what == "data":  # orbax reads these bytes back without noticing: the digest does
        _flip(max((folder / "default").glob("ocdbt.process_0/d/*"), key=lambda p: p.stat().st_size))
    elif what == "manifest":
        _flip(folder / "default" / "manifest.ocdbt")
    else:
        (folder / "_CHECKPOINT_METADATA").write_text('{"init_timestamp_nsecs": 1.5}')
    named = (f"checkpoint {folder} ", f"the checkpoints under {folder.parent} cannot be listed")
    rc, err = _main(capsys, "--resume", str(run_copy), "--set", "es.generations=15")
    err = [x for x in err if not x.startswith("INFO ")]
    assert rc == 2 and len(err) == 1 and err[0].startswith(tuple(f"error: {x}" for x in named))
    assert "move that folder away" in err[0]
    args = ["--learners", str(folder), "--datasets", "sum", "--out-dir", str(run_copy / "ev")]
    assert evaluate(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(tuple(f"error: {x}" for x in named)), err


def test_a_full_disk_is_one_line_naming_the_path_and_loses_nothing(tmp_path, monkeypatch):
    import errno

    from vsml_jax.runtime.checkpoint import Checkpointer, CheckpointError
    from vsml_jax.runtime.metrics import MetricsWriter, read_metrics

    ckpt = Checkpointer(tmp_path / "checkpoints")
    try:
        ckpt.save(5, {"mean": np.arange(3.0, dtype=np.float32)})

        def full(*args, **kwargs):  # what orbax raises when the disk fills mid-save
            (tmp_path / "checkpoints" / "10.orbax-checkpoint-tmp").mkdir()
            raise ValueError('RESOURCE_EXHAUSTED: Error writing local file "x": No space')

        monkeypatch.setattr(ckpt._manager, "save", full)
        with pytest.raises(CheckpointError) as e:
            ckpt.save(10, {"mean": np.zeros(3, np.float32)})
        assert str(e.value).startswith(
            f"saving checkpoint {tmp_path / 'checkpoints' / '10'} failed (ValueError: "
            "RESOURCE_EXHAUSTED"
        )
        assert f"the last complete checkpoint, {tmp_path / 'checkpoints' / '5'}, is intact" in (
            str(e.value)
        )
        assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["5"]
    finally:
        ckpt.close()
    again = Checkpointer(tmp_path / "checkpoints")  # what --resume does
    try:
        assert again.latest_step() == 5
        np.testing.assert_array_equal(again.restore_raw()["mean"], np.arange(3.0))
    finally:
        again.close()

    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.write({"generation": 1}, 1)

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "open", no_space)
    with pytest.raises(OSError, match=rf"cannot write {tmp_path / 'metrics.jsonl'} \(No space"):
        writer.write({"generation": 2}, 2)
    monkeypatch.undo()
    assert read_metrics(tmp_path) == [{"generation": 1}]


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["imports", "compile"])
def test_ctrl_c_at_any_moment_of_the_start_is_exit_130_with_one_line(tmp_path, moment):
    cmd = [sys.executable, "-m", "experiments.es_mnist", "--config", str(PRESET)]
    cmd += [x for o in TINY for x in ("--set", o)]
    cmd += ["--set", "es.generations=300", "--set", f"out_dir={tmp_path}"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    p = subprocess.Popen(
        ["timeout", "-s", "KILL", "240", *cmd],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 30
        child = ""
        while not child and time.time() < deadline:  # timeout(1) does not forward SIGINT
            child = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True).stdout
        if moment == "imports":
            time.sleep(1.0)  # importing jax takes seconds
        else:
            line = p.stdout.readline()
            assert line.startswith("run dir: ")  # training has started
            run = Path(line.removeprefix("run dir: ").strip())
            time.sleep(2.0)
        os.kill(int(child.split()[0]), signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        p.kill()
    progress = re.compile(r"^\s*\d+%\|")  # tqdm's bar, drawn on stderr once training runs
    lines = [
        x
        for x in err.strip().splitlines()
        if x.strip() and not x.startswith("INFO ") and not progress.match(x)
    ]
    assert p.returncode == 130, err
    assert "Traceback" not in err and len(lines) == 1, err
    # before the run dir exists, or before it holds any work (it is then removed, so that a
    # bare --resume cannot pick it up): no --resume to offer; after: the line names it
    if moment == "imports" or not run.exists():
        assert lines[0].startswith("interrupted") and "--resume" not in lines[0], lines[0]
    else:
        assert lines[0].startswith("interrupted") and f"--resume {run}" in lines[0], lines[0]


def test_orbax_noise_after_a_failed_restore_is_dropped_and_nothing_else(monkeypatch):
    import types

    from vsml_jax.runtime import checkpoint

    seen = []
    monkeypatch.setattr(checkpoint, "_previous_unraisablehook", seen.append)
    for error in (
        RuntimeError("Event loop is closed"),
        Exception("Encountered error while reading array index: (). See full TensorStore"),
        RuntimeError("something else"),
    ):
        checkpoint._drop_closed_loop_noise(types.SimpleNamespace(exc_value=error))
    assert [str(u.exc_value) for u in seen] == ["something else"]


def test_ctrl_c_swallowed_by_a_gc_callback_is_raised_at_the_next_check(monkeypatch, capsys):
    """Python ignores an exception raised inside a garbage-collector callback (jax has one),
    so a Ctrl-C landing there is remembered, not printed, and the training loop's
    ``interrupts.check()`` raises it."""
    import gc
    import signal

    from vsml_jax.runtime import interrupts

    monkeypatch.setattr(interrupts, "_installed", True)
    monkeypatch.setattr(interrupts, "_pending", False)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    previous = signal.getsignal(signal.SIGINT)
    interrupts.raise_from_now_on()
    try:
        handler = signal.getsignal(signal.SIGINT)

        def callback(phase, info):
            if phase == "start":
                handler(signal.SIGINT, None)  # as if Ctrl-C arrived during the collection

        gc.callbacks.append(callback)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(callback)
        assert "KeyboardInterrupt" not in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    finally:
        signal.signal(signal.SIGINT, previous)
