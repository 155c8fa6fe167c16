"""The tiny synthetic meta-training run several tests share: VSML on the 'sum' task, 8
inputs, 10-step episodes, 4 antithetic pairs, checkpoints every 5 generations, no meta-test
(needs no dataset files)."""

from pathlib import Path

PRESET = Path(__file__).resolve().parents[1] / "experiments/es_mnist/configs/quickstart.yaml"

TINY_SUM = [
    "cpu_devices=1",
    "data.train_sets=[sum]",
    "data.num_classes=2",
    "data.input_dim=8",
    "data.episode_length=10",
    "es.population_pairs=4",
    "es.generations_per_call=5",
    "checkpoint_every=5",
    "eval.datasets=[]",
    "tensorboard=false",
]
