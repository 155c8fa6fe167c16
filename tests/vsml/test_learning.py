"""VSML learns to learn: the production ES (population evaluation on sampled episodes,
generation, scanned block) meta-trained on a tiny task family makes it learn within
episodes (the loss falls far below log C, which no fixed predictor can beat)."""

import jax
import numpy as np

from tests.learners.utils import prototype_data, prototype_spec
from vsml_jax.config import ESConfig
from vsml_jax.learners.base import TaskSpec
from vsml_jax.learners.vsml import vsml
from vsml_jax.meta import es
from vsml_jax.vsml.network import NetworkConfig

D, C, T = 8, 2, 30


def test_es_meta_training_makes_vsml_learn_within_episodes():
    learner = vsml(NetworkConfig())
    meta = learner.meta_init(jax.random.PRNGKey(0), TaskSpec(D, C))
    strategy = es.make_strategy(ESConfig(population_pairs=32, lr=0.1), meta)
    evaluate = es.make_evaluate(learner, prototype_data(C, D), prototype_spec(T, D, C), C)
    block = jax.jit(es.make_train_block(es.make_generation(strategy, evaluate), 200))
    state = es.init_strategy(strategy, jax.random.PRNGKey(1), meta)
    _, metrics = block(state, jax.random.PRNGKey(2), 0)
    loss = np.asarray(metrics["meta_loss"])
    assert abs(loss[:20].mean() - np.log(C)) < 0.02  # starts at chance
    assert loss[-50:].mean() < 0.5 * np.log(C), loss[::50]
