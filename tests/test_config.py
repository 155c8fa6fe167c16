"""Config: presets, overrides, and one clear error per bad key or value."""

import subprocess
import sys
from pathlib import Path

import pytest

from vsml_jax.build import episode_spec, load_run_config
from vsml_jax.config import ConfigError, RunConfig, load_config, to_dict

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "experiments").glob("*/configs/*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_presets_load_and_round_trip(preset, tmp_path):
    import yaml

    from experiments.cross_dataset.protocol import CrossDatasetConfig
    from experiments.la_cloning.protocol import LACloningConfig

    if preset.stem.startswith("cross_dataset"):
        cls = CrossDatasetConfig
    elif preset.stem.startswith("la_cloning"):
        cls = LACloningConfig
    elif preset.stem.startswith("omniglot"):
        from experiments.omniglot.protocol import OmniglotConfig

        cls = OmniglotConfig
    elif preset.stem.startswith("invariances"):
        from experiments.invariances.protocol import InvariancesConfig

        cls = InvariancesConfig
    elif preset.stem == "introspection":
        from experiments.introspection.protocol import IntrospectionConfig

        cls = IntrospectionConfig
    else:
        cls = RunConfig
    cfg = load_config(preset, cls=cls)
    # every key the preset sets is a key of the config (and reads back as it was written)
    raw = yaml.safe_load(preset.read_text()) or {}
    assert set(raw) <= set(to_dict(cfg))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
    assert load_config(tmp_path / "c.yaml", cls=cls) == cfg


def test_es_mnist_preset_is_the_paper_setting():
    cfg = load_config(ROOT / "experiments/es_mnist/configs/es_mnist.yaml")
    assert cfg.es.population_pairs == 1024 and cfg.es.sigma == 0.05 and cfg.es.lr == 0.025
    assert cfg.data.episode_length == 500 and cfg.eval.episode_length == 2000
    assert cfg.data.input_dim is None and cfg.data.projection_prob == 0.5
    assert cfg.network.cell.hidden == 16 and cfg.network.cell.message == 8
    assert cfg.network.num_micro_ticks == 2


def test_overrides_are_typed():
    cfg = load_config(
        None,
        [
            "es.population_pairs=128",
            "data.train_sets=[mnist, sum]",
            "network.cell.layer_norm=true",
            "data.image_size=[14, 14]",
            "data.input_dim=null",
            "es.sigma=0.1",
        ],
    )
    assert cfg.es.population_pairs == 128
    assert cfg.data.train_sets == ("mnist", "sum")
    assert cfg.network.cell.layer_norm is True
    assert cfg.data.image_size == (14, 14)
    assert cfg.data.input_dim is None
    assert cfg.es.sigma == 0.1


@pytest.mark.parametrize(
    "override,message",
    [
        ("es.pop=3", "unknown config key es.pop"),
        ("nope=1", "unknown config key nope"),
        ("network.cell.hiden=3", "unknown config key network.cell.hiden"),
        ("es.population_pairs=many", "es.population_pairs: expected an integer"),
        ("es.sigma=true", "es.sigma: expected a number"),
        ("data.image_size=[1,2,3]", "data.image_size"),
        ("network.output_channel=9", "output_channel"),
        ("es.generations=15", "multiple of es.generations_per_call"),
        ("es", "--set expects key.path=value"),
        ("data.classes=[1, x]", "data.classes: expected an integer"),
        ("es.generations_per_call=0", "es.generations_per_call must be >= 1"),
        ("checkpoint_every=0", "checkpoint_every must be >= 1"),
        ("eval.baselines=[vsml]", "not hand-designed"),
        ("learner=nope", "unknown learner 'nope'"),
        ("learner_args={hidden: 3}", "learner_args do not apply to vsml"),
        ("es.fitness_shaping=rank", "unknown es.fitness_shaping"),
    ],
)
def test_bad_keys_and_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_run_config(None, [override])


def test_every_hand_designed_learner_is_a_default_baseline():
    from vsml_jax.config import HAND_DESIGNED
    from vsml_jax.learners import LEARNERS

    assert {"ncm", "knn", "1nn"} <= set(HAND_DESIGNED) <= set(LEARNERS)
    assert load_config(None).eval.baselines == HAND_DESIGNED
    cfg = load_config(None, ["eval.baselines=[1nn, knn]"])
    assert cfg.eval.baselines == ("1nn", "knn")


def test_learner_args_are_checked_against_the_factory():
    cfg = load_run_config(None, ["learner=meta_rnn", "learner_args={hidden: 8}"])
    assert cfg.learner_args == {"hidden": 8}
    with pytest.raises(ConfigError, match="learner_args: Unknown hyperparameter.*'hiden'"):
        load_run_config(None, ["learner=meta_rnn", "learner_args={hiden: 8}"])


def test_missing_or_broken_preset(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("nope.yaml")
    with pytest.raises(ConfigError, match="not a file"):
        load_config(tmp_path)
    (tmp_path / "bad.yaml").write_text("es: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(tmp_path / "list.yaml")


def test_partial_preset_merges_over_defaults(tmp_path):
    from experiments.cross_dataset.protocol import CrossDatasetConfig

    (tmp_path / "p.yaml").write_text("base: {es: {generations: 100}}\n")
    default = ROOT / "experiments/cross_dataset/configs/cross_dataset.yaml"
    cfg = load_config(tmp_path / "p.yaml", cls=CrossDatasetConfig, defaults=default)
    assert cfg.base.es.generations == 100
    assert cfg.base.data.grey and cfg.base.data.input_dim == 32  # kept from the defaults


def test_cli_print_config_and_error_exit():
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.es_mnist",
            "--print-config",
            "--set",
            "es.population_pairs=8",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "population_pairs: 8" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "experiments.es_mnist", "--set", "es.sigma=x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: es.sigma: expected a number, got 'x'"


def test_perf_options_round_trip_and_bad_values_are_clear_errors():
    cfg = load_config(overrides=["network.cell.matmul_dtype=bfloat16", "es.eval_batch=4"])
    assert (cfg.network.cell.matmul_dtype, cfg.es.eval_batch) == ("bfloat16", 4)
    with pytest.raises(ConfigError, match="cell.matmul_dtype must be one of float32, bfloat16"):
        load_config(overrides=["network.cell.matmul_dtype=fp16"])
    with pytest.raises(ConfigError, match="es.eval_batch must be >= 0"):
        load_config(overrides=["es.eval_batch=-1"])


def test_grad_curriculum_parses_round_trips_and_is_checked():
    from vsml_jax.config import from_dict

    cfg = load_config(
        None, ["grad.curriculum=[{until: 50, classes: [2, 3]}, {until: 80, classes: 5}]"]
    )
    assert [(c.until, c.classes) for c in cfg.grad.curriculum] == [(50, (2, 3)), (80, (5,))]
    assert from_dict(RunConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="increasing"):
        load_config(
            None, ["grad.curriculum=[{until: 50, classes: [2]}, {until: 50, classes: [3]}]"]
        )
    with pytest.raises(ConfigError, match="until >= 1"):
        load_config(None, ["grad.curriculum=[{until: 0, classes: [2]}]"])


def test_episode_settings_are_checked_by_the_episode_specs():
    with pytest.raises(ConfigError, match="^data: few-shot shots must be an int >= 1, got 0$"):
        load_run_config(None, ["data.ways=10", "data.shots=0"])
    with pytest.raises(ConfigError, match="^data: early_weight must be a finite number > 0"):
        load_run_config(None, ["data.early_weight=0"])
    with pytest.raises(ConfigError, match=r"^data: projection_prob must be in \[0, 1\], got 1.5$"):
        load_run_config(None, ["data.projection_prob=1.5"])
    with pytest.raises(ConfigError, match="few-shot episodes .* data.fitness_steps"):
        load_run_config(None, ["data.ways=10", "data.early_steps=3"])
    spec = episode_spec(load_run_config(None, ["data.early_steps=2", "data.early_weight=5"]), 3)
    assert spec.loss_weights == (5.0, 5.0, 1.0)
    with pytest.raises(ConfigError, match="^data: fitness_steps must be 'all' or 'queries'"):
        load_run_config(None, ["data.ways=10", "data.fitness_steps=last"])
    for gain, bad in (("input_gain", "[2, 1]"), ("class_gain", "[0, 1]")):
        with pytest.raises(ConfigError, match=rf"^data: {gain} must be \(lo, hi\) with 0 < lo"):
            load_run_config(None, [f"data.{gain}={bad}"])
        with pytest.raises(ConfigError, match=f"{gain} applies to online episodes"):
            load_run_config(None, ["data.ways=10", f"data.{gain}=[0.5, 2]"])
        spec = episode_spec(load_run_config(None, [f"data.{gain}=[0.5, 2]"]), 3)
        assert getattr(spec, gain) == (0.5, 2.0)


def test_config_is_a_leaf_that_imports_nothing_of_the_library():
    code = (
        "import sys, vsml_jax.config; "
        "print(sorted(m for m in sys.modules if m.startswith(('vsml_jax', 'jax'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.split() == ["['vsml_jax',", "'vsml_jax.config']"], out.stderr
