# process B: precompute the long stage's cache of experiments.la_cloning in the same run dir
import sys
from pathlib import Path

import jax
import yaml

from experiments.la_cloning import protocol as L
from vsml_jax.build import episode_spec, load_data, run_key
from vsml_jax.learners.grid_sgd import grid_sgd
from vsml_jax.learners.vsml import vsml
from vsml_jax.runtime.devices import population_mesh

rd = Path(sys.argv[1])
cfg = L.load(yaml.safe_load((rd / "config.yaml").read_text()))
cell_params, readout = L.train_clone(cfg, rd / "clone")
base = cfg.base
t = cfg.test_sets[0]
data = load_data(base, [t], "test", population_mesh())
key = jax.random.fold_in(run_key(base.seed, "meta_test"), 0)
net = L.clone_network(cfg)
learners = {
    "VSML clone": (vsml(net), (cell_params,)),
    f"SGD it clones (lr={cfg.clone.lr:g})": (
        grid_sgd(cfg.clone.lr, cfg.clone.bias_lr, net, readout),
        {},
    ),
}
prefix = rd / "meta_test" / f"{t}__long{cfg.long_steps}__"
L._test_learners(prefix, learners, data, episode_spec(base, cfg.long_steps), cfg.long_episodes, key)
print("done")
