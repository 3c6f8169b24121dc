"""What checkpoints cost, how fast a signal stops a run, and how much work a resume saves.

    python -m bench.checkpoints          # about 5 minutes on 2 CPU cores; writes docs/benchmarks/checkpoints.md

1. Cost of a checkpoint, in the training loop itself: one epoch of the demo data (fit, as a run calls it) with a
   checkpoint after every optimizer step, each save timed; for MiniLM (seq_cls) and SmolLM2 (generative head).
   From it, the share of an epoch that the default (`train.checkpoint_every=50`, plus one at the epoch's end)
   costs.
2. `python -m sentlab.train` (MiniLM, demo data, 2 epochs) stopped with SIGTERM early in epoch 2: the time
   from the signal to the process's exit; then `resume=RUN_ID` against the same run from scratch, wall time.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.sweep_overhead import machine

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "checkpoints.md"
PY = sys.executable
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
MODELS = {
    "MiniLM (seq_cls)": ["train.max_length=64"],
    "SmolLM2-135M (generative)": [
        "backbone=smollm2",
        f"backbone.cache_dir={REPO / 'runs' / 'models'}",
        "head=generative",
        "train.max_length=64",
        "data.max_samples.train=160",
    ],
}
RUN = ["train.epochs=2", "train.checkpoint_every=10"]  # the end-to-end part: MiniLM on the demo data


def save_cost(overrides: list[str], tmp: Path) -> dict:
    """One epoch of fit with a checkpoint after every step: per-save times, the epoch's time (its validation
    included) without them."""
    from hydra import compose, initialize_config_dir

    import sentlab  # noqa: F401
    from sentlab import checkpoints, models, pipeline
    from sentlab.training import fit

    with initialize_config_dir(config_dir=str(REPO / "sentlab" / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*overrides, "train.epochs=1", f"runs_dir={tmp}"])
    prepared = pipeline.prepare(cfg)
    cfg, data, head, device = prepared.cfg, prepared.data, prepared.head, prepared.device
    model = models.build(cfg, head, device)
    features = {split: head.encode(rows) for split, rows in data.splits.items()}
    saved = checkpoints.Checkpoints(tmp / "checkpoints", every=1, keep=cfg.train.keep_checkpoints)
    times, original = [], saved.save

    def timed(state, step):
        start = time.perf_counter()
        path = original(state, step)
        times.append(time.perf_counter() - start)
        return path

    saved.save = timed
    start = time.perf_counter()
    fit(model, head, features, cfg.train, device, checkpoints=saved)
    total = time.perf_counter() - start
    size = max(f.stat().st_size for f in saved.files()) / 2**20
    steps = len(times) - 1  # one save per step, and one at the epoch's end
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "steps": steps,
        "save_s": statistics.median(times),
        "size_mb": size,
        "trainable": trainable,
        "epoch_s": total - sum(times),
    }


def stop_and_resume(tmp: Path) -> dict:
    """Fresh run; then the same run stopped by SIGTERM early in epoch 2 and resumed: wall times."""

    def command(*args):
        return [PY, "-m", "sentlab.train", *args, f"runs_dir={tmp}"]

    start = time.perf_counter()
    subprocess.run(command(*RUN), cwd=REPO, env=ENV, check=True, capture_output=True)
    fresh = time.perf_counter() - start

    start = time.perf_counter()
    process = subprocess.Popen(
        command(*RUN, "train.seed=7"), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    while not any(int(f.stem.split("-")[1]) > 29 for f in tmp.glob("checkpoints/*/step-*.pt")):  # 29 steps/epoch
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    before = time.perf_counter() - start
    sent = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate()
    stop = time.perf_counter() - sent
    line = err.strip().splitlines()[-1]
    resume_args = line.split("resume with: python -m sentlab.train ")[1].split()
    start = time.perf_counter()
    subprocess.run([PY, "-m", "sentlab.train", *resume_args], cwd=REPO, env=ENV, check=True, capture_output=True)
    resumed = time.perf_counter() - start
    return {
        "fresh_s": fresh,
        "before_s": before,
        "stop_s": stop,
        "exit_code": process.returncode,
        "line": line,
        "resume_s": resumed,
    }


def main() -> None:
    if sys.argv[1:2] == ["--save-cost"]:  # one model per process: what a run's process holds
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(save_cost(sys.argv[2:], Path(tmp))))
        return
    loads = [os.getloadavg()[0]]
    costs = {}
    for name, overrides in MODELS.items():
        print(f"checkpoint cost: {name} ...", flush=True)
        out = subprocess.run(
            [PY, "-m", "bench.checkpoints", "--save-cost", *overrides],
            cwd=REPO,
            env=ENV,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        costs[name] = json.loads(out.strip().splitlines()[-1])
        loads.append(os.getloadavg()[0])
    print("SIGTERM and resume ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        run = stop_and_resume(Path(tmp))
    loads.append(os.getloadavg()[0])
    write(costs, run, loads)


def write(costs: dict, run: dict, loads: list) -> None:
    rows = []
    for name, c in costs.items():
        per_step = c["epoch_s"] / c["steps"]
        default_saves = c["steps"] // 50 + 1  # checkpoint_every=50 and the epoch's end
        rows.append(
            f"| {name} | {c['trainable']:,} | {c['size_mb']:.2f} | {c['save_s'] * 1000:.1f} | "
            f"{per_step * 1000:.0f} | {c['steps']} | {100 * default_saves * c['save_s'] / c['epoch_s']:.2f} % |"
        )
    text = f"""# Checkpoints, stop signals and resume

```bash
python -m bench.checkpoints      # part of make bench
```

Machine: {machine()}. Load average (1 min) during the benchmark: {", ".join(f"{x:.1f}" for x in loads)} (other
engineers' jobs shared the 2 cores: absolute times are noisy, ratios less so).

## Cost of a checkpoint

One epoch of the demo data through `training.fit` with a checkpoint after every optimizer step (batch 16,
max length 64), each save timed (median). A checkpoint holds the trainable weights (LoRA and the head), AdamW's
two moments for each, the scheduler, the RNG states, the position in the epoch, the kept epoch's weights and the
early-stopping state: a few times the adapter's size, whatever the size of the frozen base.

| model | trainable params | checkpoint (MB) | save (ms) | step, validation share included (ms) | steps per epoch | default's share of an epoch |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

The default (`train.checkpoint_every=50`, and one at each epoch's end) is therefore on: its cost is well under
the noise of a shared machine. SmolLM2's epoch here is 160 rows. The step times above are inflated by the load
(the same MiniLM step takes about 0.3 s on an idle machine: the README's default run); at that speed a save
would still be about 4 % of one step, and the default's share of an epoch about 0.15 %.

## Stop and resume (MiniLM, demo data, 2 epochs, `train.checkpoint_every=10`)

| | wall time |
|---|---|
| a fresh run, start to end (process start included) | {run["fresh_s"]:.1f} s |
| the same config until SIGTERM (early in epoch 2) | {run["before_s"]:.1f} s |
| SIGTERM to exit (finish the step, save, mark KILLED, log) | {run["stop_s"]:.2f} s, exit code {run["exit_code"]} |
| `resume=RUN_ID` to the end | {run["resume_s"]:.1f} s |
| saved by resuming instead of restarting | {run["fresh_s"] - run["resume_s"]:.1f} s ({100 * (1 - run["resume_s"] / run["fresh_s"]):.0f} %) |

What the stopped run printed (stderr):

```
{run["line"]}
```

A resume pays the process start and model load again (most of this small run's time) and then only the steps
not yet done; on a long run the saving is the share of the steps already done, less at most
`train.checkpoint_every` steps.
"""
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
