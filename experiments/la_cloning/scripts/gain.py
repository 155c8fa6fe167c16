import jax
import jax.numpy as jnp

from vsml_jax.episode import run_episode
from vsml_jax.learners.grid_sgd import grid_sgd
from vsml_jax.learners.vsml import vsml
from vsml_jax.vsml.backprop import backprop_cell
from vsml_jax.vsml.cell import CellConfig
from vsml_jax.vsml.network import NetworkConfig

cell = CellConfig(random_cell_copies=4, random_cell_std=0.0025)
net = NetworkConfig(
    cell=cell,
    hidden_layers=(6,),
    num_micro_ticks=1,
    output_channel=0,
    backward_pass=True,
    forward_sweep_feedback=False,
)
k = jax.random.split(jax.random.PRNGKey(0), 4)
T, D, C = 1500, 12, 4
labels = jax.random.randint(k[0], (T,), 0, C)
xs = jax.random.normal(k[1], (C, D))[labels] + jax.random.normal(k[2], (T, D))
for g in (0.1, 0.01):
    params, readout = backprop_cell(cell, error_gain=g)
    clone = run_episode(vsml(net), (params,), xs, labels, k[3], C)
    ref = run_episode(grid_sgd(1.0, 0.03, net, readout), {}, xs, labels, k[3], C)
    d = jnp.abs(clone.logits - ref.logits).max(-1)
    print(
        g,
        [float(d[s : s + 250].max()) for s in range(0, T, 250)],
        float(jnp.abs(ref.logits).mean()),
    )
