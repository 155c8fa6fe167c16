from vsml_jax.build import episode_spec, load_data, run_key
from vsml_jax.config import DataConfig, RunConfig
from vsml_jax.evaluation import evaluate
from vsml_jax.learners.grid_sgd import grid_sgd
from vsml_jax.runtime.devices import population_mesh
from vsml_jax.vsml.network import NetworkConfig

cfg = RunConfig(data=DataConfig(input_dim=None))
data = load_data(cfg, ["mnist"], "train", population_mesh())
spec = episode_spec(cfg, 1000)
for hidden in [(), (32,)]:
    for std in [1.0, 5.0, 20.0]:
        for lr in [0.3, 1.0, 3.0, 10.0]:
            net = NetworkConfig(
                hidden_layers=hidden,
                num_micro_ticks=1,
                output_channel=0,
                backward_pass=True,
                forward_sweep_feedback=False,
            )
            acc = evaluate(
                grid_sgd(lr, 0.03, net, None, std), {}, data, spec, 8, run_key(0, "tune")
            ).accuracy
            print(
                hidden,
                std,
                lr,
                round(float(acc.mean()), 3),
                round(float(acc[:, -200:].mean()), 3),
                flush=True,
            )
