"""Omniglot few-shot: settings, disjoint characters, fixed-output LAs, and a tiny end-to-end run."""

import csv
from pathlib import Path

import numpy as np
import pytest

from experiments.omniglot.protocol import (
    OmniglotConfig,
    _fixed_outputs,
    parse_setting,
    split_characters,
)
from vsml_jax.config import ConfigError, load_config
from vsml_jax.data import DatasetArrays
from vsml_jax.data.dirs import shared_tfds_dirs
from vsml_jax.learners import make_learner
from vsml_jax.learners.vsml import vsml

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "experiments/omniglot/configs/omniglot.yaml"


def test_settings():
    assert parse_setting("5w1s") == (5, 1) and parse_setting("20w5s") == (20, 5)
    with pytest.raises(ConfigError, match="must look like 5w1s"):
        parse_setting("5-way")


def test_preset_and_bad_configs():
    cfg = load_config(PRESET, cls=OmniglotConfig)
    assert cfg.base.data.ways == 5 and cfg.settings == ("5w1s", "5w5s", "20w1s")
    assert {"ncm", "1nn", "maml", "vsml", "vsml@conv"} <= set(cfg.las)
    with pytest.raises(ConfigError, match="unknown LA 'nope'"):
        load_config(PRESET, ["las=[vsml, nope]"], cls=OmniglotConfig)
    with pytest.raises(ConfigError, match="needs its overrides"):
        load_config(PRESET, ["las=[vsml@other]"], cls=OmniglotConfig)
    with pytest.raises(ConfigError, match="must look like"):
        load_config(PRESET, ["settings=[five]"], cls=OmniglotConfig)
    with pytest.raises(ConfigError, match="base.data.ways must be set"):
        load_config(PRESET, ["base.data.ways=null"], cls=OmniglotConfig)
    with pytest.raises(ConfigError, match="needs data.num_classes=5"):
        load_config(PRESET, ["base.data.num_classes=10"], cls=OmniglotConfig)


def _arrays(labels, split):
    labels = np.asarray(labels, np.int32)
    images = np.zeros((len(labels), 2, 2, 1), np.uint8)
    return DatasetArrays("omniglot", "t", split, images, labels, 100, 0.5, 0.5)


def test_meta_test_characters_are_unseen():
    train = _arrays([10, 10, 11, 11, 12, 12], "train")
    test = _arrays([11, 11, 20, 20, 21, 21, 22, 22], "test")  # 11 is shared
    train, test, shared = split_characters(train, test)
    assert shared == 1
    assert train.num_classes == 3 and test.num_classes == 3
    assert sorted(set(test.labels.tolist())) == [0, 1, 2] and len(test.labels) == 6
    with pytest.raises(ValueError, match="no characters unseen"):
        split_characters(_arrays([1, 2], "train"), _arrays([1, 2], "test"))


def test_which_las_have_a_fixed_output_size():
    assert _fixed_outputs(make_learner("maml", hidden=(4,)), 9, 20, 5)
    assert not _fixed_outputs(make_learner("maml", hidden=(4,)), 9, 5, 5)
    assert not _fixed_outputs(vsml(), 9, 20, 5)  # shared cells: any number of outputs


@pytest.mark.slow
@pytest.mark.skipif(not shared_tfds_dirs(), reason="../shared/datasets/tfds is not available")
def test_omniglot_command_end_to_end(tmp_path, capsys):
    from experiments.omniglot.main import main

    argv = [
        "--set",
        f"out_dir={tmp_path}",
        "--set",
        "las=[vsml@conv, maml, ncm]",
        "--set",
        "settings=[3w2s]",
        "--set",
        "eval_episodes=4",
        "--set",
        "base.data.image_size=[6, 6]",
        "--set",
        "base.data.queries=1",
        "--set",
        "base.es.population_pairs=1",
        "--set",
        "base.es.generations=2",
        "--set",
        "base.es.generations_per_call=2",
        "--set",
        "base.grad.steps=2",
        "--set",
        "base.grad.steps_per_call=2",
        "--set",
        "base.checkpoint_every=2",
        "--set",
        "base.cpu_devices=1",
        "--set",
        "base.network.cell={hidden: 2, message: 2}",
        "--set",
        "base.network.num_micro_ticks=1",
        "--set",
        "la_overrides={'vsml@conv': ['network.conv_channels=[1]', 'network.image_shape=[6, 6, 1]'],"
        " maml: [trainer=grad, grad.batch_size=1, 'learner_args={hidden: [2]}']}",
    ]
    rc = main(argv)  # in-process
    assert rc == 0, capsys.readouterr().err[-2000:]
    run = next((tmp_path / "omniglot").iterdir())
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [(r["la"], r["setting"]) for r in rows] == [
        (la, "3-way 2-shot") for la in ("vsml@conv", "maml", "ncm")
    ]
    assert all(0.0 <= float(r["query_acc"]) <= 1.0 and r["episodes"] == "4" for r in rows)
    notes = {(r["la"], r["setting"]): r["meta_trained_on"] for r in rows}
    assert notes[("vsml@conv", "3-way 2-shot")] == "5-way 1-shot"  # the same V_M
    assert notes[("maml", "3-way 2-shot")].startswith("3-way")  # retrained: fixed outputs
    # ... and only for the ways it is tested on, not also for the 5 it would not be tested at
    maml = [p.name for p in (run / "meta_train").iterdir() if p.name.startswith("maml")]
    assert len(maml) == 1 and maml[0].endswith("-3way"), maml
    assert (run / "figure.png").stat().st_size > 0
    assert (run / "meta_train" / "maml__omniglot-3way" / "summary.json").exists()
