"""Start a project of your own that uses sentlab: a `conf/` folder beside sentlab's, with one experiment on your CSV.

    python -m sentlab.init my_project        # or: sentlab-init my_project
    cd my_project && python -m sentlab.train --config-dir conf experiment=my_experiment

writes my_project/conf/data/my_reviews.yaml (your CSV files: folder, columns, labels),
my_project/conf/experiment/my_experiment.yaml (sentlab's groups: backbone, head, lora, train; your data) and, as an
example to replace, my_project/data/train.csv and test.csv (sentlab's synthetic demo reviews). `--config-dir conf`
adds the folder to Hydra's search path beside sentlab's own configs (`hydra.searchpath=[file://conf]` in a config
does the same): any group of yours (backbone, data, experiment, sweep) sits beside sentlab's options.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from sentlab import PACKAGE_DIR, cli
from sentlab.errors import ConfigError

DATA = """\
# Your labelled data: the files in `dir` (relative to where you run sentlab), their columns, the labels.
# Any of .csv, .tsv, .jsonl/.json, .parquet works; a missing val file is carved from train (val_fraction).
name: my_reviews
hub_id: null
hub_subset: null
hub_splits: {train: null, val: null, test: null}
dir: data
files: {train: train.csv, val: null, test: test.csv}
text_column: text       # the column of the texts (or a list of columns, joined)
label_column: label     # labels as names (matched case-insensitively) or ids 0..N-1
encoding: utf-8
label_names: [negative, neutral, positive]   # your classes, in label-id order
label_words: ${.label_names}                 # what head=generative scores, one word per label
val_fraction: 0.1
max_samples: {train: null, val: null, test: null}
seed: ${train.seed}
"""

EXPERIMENT = """\
# @package _global_
# python -m sentlab.train --config-dir conf experiment=my_experiment
# sentlab's groups (backbone, head, lora, train, sweep: see `python -m sentlab.train --help`) on your data.
defaults:
  - override /backbone: minilm      # the packaged all-MiniLM-L6-v2; e.g. roberta, or a backbone file of yours
  - override /head: seq_cls
  - override /data: my_reviews      # conf/data/my_reviews.yaml, yours (or sentlab's `csv`, set under data: below)

lora: {r: 8, alpha: 16, dropout: 0.1}
train: {epochs: 3, lr: 5e-4, batch_size: 16, max_length: 128}
tracking: {experiment: my_project}  # the MLflow experiment, in runs/mlflow.db (`mlflow ui --backend-store-uri ...`)
# with `override /data: csv`:  data: {dir: data, files: {val: null}, label_names: [negative, neutral, positive]}
"""

NEXT_STEPS = """\
wrote {root}/conf/data/my_reviews.yaml, {root}/conf/experiment/my_experiment.yaml and example data in {root}/data/
next: put your train.csv and test.csv (columns text, label) in {root}/data/, set your label_names in
{root}/conf/data/my_reviews.yaml, then:
  cd {root} && python -m sentlab.train --config-dir conf experiment=my_experiment"""


def write_starter(root: Path) -> list[Path]:
    """The starter files under root (created); a ConfigError, and nothing written, if any of them exists."""
    files = {
        root / "conf" / "data" / "my_reviews.yaml": DATA,
        root / "conf" / "experiment" / "my_experiment.yaml": EXPERIMENT,
    }
    examples = {
        root / "data" / f"{split}.csv": PACKAGE_DIR / "demo_data" / f"{split}.csv" for split in ("train", "test")
    }
    existing = [path for path in [*files, *examples] if path.exists()]
    if existing:
        raise ConfigError(f"{existing[0]} exists: sentlab.init writes a new project (choose another folder)")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for path, source in examples.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
    return [*files, *examples]


@cli.entry_point("sentlab.init")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sentlab.init", description=__doc__.strip().split("\n")[0])
    p.add_argument("folder", help="the project folder (created if need be)")
    args = p.parse_args(argv)
    write_starter(Path(args.folder))
    print(NEXT_STEPS.format(root=args.folder))
    return 0


def console_script() -> None:
    """`sentlab-init FOLDER` (pyproject's [project.scripts])."""
    cli.run(main)


if __name__ == "__main__":
    console_script()
