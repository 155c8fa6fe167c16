# iterate averaging: python -m experiments.la_cloning.scripts.average RUN_DIR OUT_DIR STEP...
# writes OUT_DIR, a copy of the run RUN_DIR whose only checkpoint (numbered as the last STEP)
# holds the mean meta-parameters averaged over the checkpoints STEP... (Polyak/SWA
# averaging of the meta-gradient iterates; the rest of the checkpoint is the last STEP's).
# OUT_DIR then works wherever a run directory does: grad_test, init_from, ship_pretrained.
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from vsml_jax.runtime.checkpoint import Checkpointer

src, out, *steps = sys.argv[1:]
src, out, steps = Path(src), Path(out), [int(s) for s in steps]
if not steps:
    sys.exit("usage: average RUN_DIR OUT_DIR STEP... (name at least one checkpoint step)")
if out.exists():
    sys.exit(f"{out} exists; name a new directory")
ckpt = Checkpointer(src / "checkpoints")
raws = [ckpt.restore_raw(s) for s in steps]
ckpt.close()
tree = dict(raws[-1])
tree["mean"] = np.mean([np.asarray(r["mean"], np.float64) for r in raws], axis=0).astype(
    np.asarray(raws[-1]["mean"]).dtype
)
out.mkdir(parents=True)
for f in ("config.yaml", "task.json", "metrics.jsonl", "provenance.json"):
    if (src / f).exists():
        shutil.copy(src / f, out / f)
(out / "averaged.json").write_text(json.dumps({"run": str(src), "steps": steps}) + "\n")
ckpt = Checkpointer(out / "checkpoints")
ckpt.save(steps[-1], tree)
ckpt.close()
print(f"{out}: mean meta-parameters of {src} over steps {steps}")
