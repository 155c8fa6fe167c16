"""What a run needs around the learning: the command-line entry (:mod:`.cli`), run
directories and their lock (:mod:`.rundir`), checkpoints (:mod:`.checkpoint`), metrics
(:mod:`.metrics`), and devices: the population mesh, the CPU device split, jax.distributed
start-up and the peer watchdog (:mod:`.devices`). It imports nothing of the learning code."""
