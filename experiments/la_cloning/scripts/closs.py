import jax
import jax.numpy as jnp

from experiments.la_cloning import cloning
from vsml_jax.vsml.backprop import backprop_cell
from vsml_jax.vsml.cell import CellConfig

cell = CellConfig(random_cell_copies=4, random_cell_std=0.0025)
p, ro = backprop_cell(cell)
params = cloning.CloneParams(p, ro)
for steps in (40, 1000):
    cfg = cloning.CloneConfig(
        grids=8, grid=(32, 10), steps=steps, c_std=(0.0005, 0.005), remat=False
    )
    state = cloning.fresh_states(jax.random.PRNGKey(0), cell, cfg)
    batch = cloning.sample_batch(jax.random.PRNGKey(1), cfg)
    loss, (terms, final) = jax.jit(lambda s, b, c=cfg: cloning.clone_loss(params, s, b, c))(
        state, batch
    )
    w = cloning.readout(params, final.c)[0]
    print(
        steps,
        float(loss),
        {k: float(v) for k, v in terms.items()},
        "max|w|",
        float(jnp.abs(w).max()),
    )
