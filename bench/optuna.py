"""A pruned Optuna study against a full one: trials, epochs trained, wall time, best validation metric.

    python -m bench.optuna            # MiniLM: about 8 minutes on 2 idle CPU cores; writes docs/benchmarks/optuna.md
    python -m bench.optuna --tiny     # a tiny random BERT instead (the tests' model): for a busy machine

Two studies of the preset `sweep=optuna` (TPE with seed 42 over lr, LoRA rank and dropout), 12 trials each, on the
demo data (5 epochs a trial), each in a fresh store: one with the preset's median pruner (n_startup_trials 5,
n_warmup_steps 2), one without a pruner. TPE draws its first 10 trials at random from the seed, so both studies try
the same 10 settings (the pruned one stops some of them early); the last 2 are TPE's picks, which differ.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "optuna.md"
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
TRIALS = 12
EPOCHS = 5
SWEEP = ["-m", "sweep=optuna", f"hydra.sweeper.n_trials={TRIALS}", f"train.epochs={EPOCHS}", "train.max_length=64"]
TINY_NOTE = """A tiny random model learns little in 5 epochs: most trials stay at one class (val_f1_macro 0.1625), and a
median pruner stops only a trial strictly below the median, so these numbers show the mechanics and costs, not what
pruning finds; the MiniLM run (`python -m bench.optuna`) is the one to judge pruning by.

"""
MODELS = {"minilm": "MiniLM-L6 (22.7M parameters, pretrained)", "tiny": "a tiny random BERT (hidden 64, 2 layers)"}
STUDIES = {"full (no pruner)": ["hydra.sweeper.pruner=null"], "pruned (median pruner)": []}


def tiny_model(folder: Path) -> list[str]:
    """The tests' tiny random BERT (MiniLM's tokenizer), built into `folder`: the overrides that select it."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import _build

    return [f"backbone.source={_build('bert', folder)}"]


def run_study(extra: list[str], runs_dir: str) -> dict:
    """Run one study; what it did, read back from its Optuna storage and MLflow store."""
    import mlflow
    import optuna

    load = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sentlab.train", *SWEEP, *extra, f"runs_dir={runs_dir}"],
        cwd=REPO,
        env=ENV,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    storage = f"sqlite:///{runs_dir}/optuna.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    trials = study.get_trials()
    best = study.best_trial
    client = mlflow.MlflowClient(f"sqlite:///{runs_dir}/mlflow.db")
    best_run = client.get_run(best.user_attrs["mlflow_run_id"])
    return {
        "load": (load, os.getloadavg()[0]),
        "wall_s": wall,
        "complete": sum(t.state.name == "COMPLETE" for t in trials),
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "failed": sum(t.state.name == "FAIL" for t in trials),
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "best_value": best.value,
        "best_trial": best.number,
        "best_params": best.params,
        "best_test": best_run.data.metrics.get("test_f1_macro"),
        "trials": [
            (
                t.number,
                t.params,
                t.state.name,
                len(t.intermediate_values),
                max(t.intermediate_values.values(), default=float("nan")),
            )
            for t in trials
        ],
    }


def _params(params: dict) -> str:
    return f"lr={params['train.lr']:.2e} r={params['lora.r']} dropout={params['lora.dropout']:.2f}"


def main() -> None:
    model = "tiny" if "--tiny" in sys.argv else "minilm"
    results = {}
    with tempfile.TemporaryDirectory() as models:
        chosen = tiny_model(Path(models) / "tiny_bert") if model == "tiny" else []
        for name, extra in STUDIES.items():
            with tempfile.TemporaryDirectory() as tmp:
                results[name] = run_study([*chosen, *extra], tmp)
                print(name, {k: v for k, v in results[name].items() if k != "trials"}, flush=True)
    flag = " --tiny" if model == "tiny" else ""
    shown = [*SWEEP, *(["backbone.source=TINY_BERT"] if model == "tiny" else [])]
    full, pruned = results.values()
    rows = "\n".join(
        f"| {name} | {r['complete']} | {r['pruned']} | {r['failed']} | {r['epochs']} of {TRIALS * EPOCHS} | "
        f"{r['wall_s'] / 60:.1f} min | {r['best_value']:.4f} (trial {r['best_trial']}: {_params(r['best_params'])}) | "
        f"{r['best_test']:.4f} | {r['load'][0]:.1f} / {r['load'][1]:.1f} |"
        for name, r in results.items()
    )
    trials = "\n".join(
        f"| {n} | {_params(p)} | {state.lower()} after {epochs} | {best:.4f} |"
        for n, p, state, epochs, best in pruned["trials"]
    )
    OUT.write_text(f"""# Optuna: a pruned study against a full one

Command: `python -m bench.optuna{flag}` (`make bench` runs it without `--tiny`, on MiniLM), which runs each of

```
python -m sentlab.train {" ".join(shown)} hydra.sweeper.pruner=null   # full
python -m sentlab.train {" ".join(shown)}                             # pruned
```

in a fresh store, on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {time.strftime("%Y-%m-%d")}:
{MODELS[model]} + LoRA on the demo data (450 train, 120 val, 120 test rows; texts cut to 64 tokens),
5 epochs a trial, the preset's search space (lr log 5e-5..5e-3, r 4/8/16/32, dropout 0..0.3) and TPE sampler (seed 42). The pruned study uses the preset's
median pruner: after 5 finished trials, a trial whose best val_f1_macro so far is below the median of the finished
trials' at the same epoch stops there, from epoch 2 on.

| study | complete | pruned | failed | epochs trained | wall time | best val_f1_macro (trial) | its test_f1_macro | load average (start / end) |
|---|---|---|---|---|---|---|---|---|
{rows}

Wall time: the pruned study took {pruned["wall_s"] / full["wall_s"]:.2f}x the full one's, for
{pruned["epochs"] / full["epochs"]:.2f}x its epochs; each trial also pays its fixed costs (model load, test, MLflow
logging) unless it is pruned, which skips the test and the adapter upload. The load average is that of the whole
machine, shared with other work while this ran: compare the two studies' epochs as well as their minutes.

The pruned study's trials (best val_f1_macro over the epochs it trained):

| trial | params | state | best val_f1_macro |
|---|---|---|---|
{trials}

{TINY_NOTE if model == "tiny" else ""}TPE draws its first 10 trials at random from the seed: both studies try the same 10 settings, the pruned one stopping
some of them early; trials 10 and 11 are TPE's picks, which differ. With 12 trials and 5 startup trials the pruner
judges 7; on longer studies it judges a larger share.
""")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
