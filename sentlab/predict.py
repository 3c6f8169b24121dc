"""Classify texts with a logged run's model, or compare runs' predictions side by side.

    python -m sentlab.predict RUN_ID "great value, works well" "broke after a day"
    python -m sentlab.predict models:/sentiment@champion --file reviews.csv --text-column review --out preds.csv
    cat reviews.txt | python -m sentlab.predict runs:/RUN_ID/model --out preds.jsonl
    python -m sentlab.predict "a fine kettle" --compare ZERO_SHOT_RUN TRAINED_RUN   # one base, adapters swapped

A model is a run id, a runs:/ or a models:/ URI (sentlab.mlflow_model rebuilds it). Texts come from the
arguments, --file (.txt: one per line; .csv, .tsv, .jsonl: the --text-column) or standard input. They are
classified in batches sorted by length; the output is one JSON line per text (label, probability, prob_<label>)
on standard output, or --out FILE.jsonl / FILE.csv.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sentlab import cli
from sentlab.errors import ConfigError

TABLES = {".csv": ",", ".tsv": "\t"}
OUTPUTS = (".jsonl", ".csv")


def read_texts(path: str, text_column: str) -> list[str]:
    """Texts of a .txt (one per line), .csv, .tsv or .jsonl file; a ConfigError names a missing column."""
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--file: no such file {file}")
    suffix = file.suffix.lower()
    if suffix not in (".txt", ".jsonl", *TABLES):
        raise ConfigError(f"--file: unknown format '{suffix}' of {file} (use .txt, .csv, .tsv or .jsonl)")
    if suffix == ".txt":
        return [line.rstrip("\n") for line in file.open() if line.strip()]
    if suffix == ".jsonl":
        table = pd.read_json(file, lines=True, dtype=False)
    else:
        table = pd.read_csv(file, sep=TABLES[suffix], keep_default_na=False, dtype=str)
    if text_column not in table.columns:
        raise ConfigError(
            f"--text-column: no column '{text_column}' in {file} (columns: "
            f"{', '.join(map(str, table.columns))}); set --text-column=<one of them>"
        )
    return [str(t) for t in table[text_column]]


def write(frame, out: str | None) -> None:
    """JSON lines on standard output, or --out as .jsonl or .csv."""
    if out and Path(out).suffix.lower() == ".csv":
        frame.to_csv(out, index=False)
    else:
        lines = (json.dumps(row, ensure_ascii=False) for row in frame.to_dict(orient="records"))
        text = "\n".join(lines) + "\n" if len(frame) else ""
        if out:
            Path(out).write_text(text)
        else:
            sys.stdout.write(text)
    if out:
        print(f"wrote {len(frame)} predictions to {out}", file=sys.stderr)


def compare(refs: list[str], texts: list[str], batch_size: int | None):
    """The runs' predictions side by side: one base loaded, the runs' adapters swapped on it."""
    import tempfile

    import pandas as pd

    from sentlab import classifier as classifiers
    from sentlab import mlflow_model

    with tempfile.TemporaryDirectory() as tmp:
        files = [mlflow_model.fetch(ref, f"{tmp}/{i}") for i, ref in enumerate(refs)]
        shared = classifiers.load_shared([(ref, f.cfg, f.adapter) for ref, f in zip(refs, files)])
    frame = pd.DataFrame({"text": texts})
    for ref, classifier in zip(refs, shared):
        predicted = classifier.predict(texts, batch_size)
        frame[f"{ref}:label"], frame[f"{ref}:probability"] = predicted["label"], predicted["probability"]
    return frame


def parse_args(argv=None):
    p = cli.parser("sentlab.predict", __doc__, model=False)
    p.add_argument(
        "args",
        nargs="*",
        metavar="MODEL [TEXT ...]",
        help="a run id, runs:/ or models:/ URI, then texts (with --compare: texts only)",
    )
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="MODEL",
        help="runs on one base to compare side by side (texts before it, or from --file or standard input)",
    )
    p.add_argument("--file", help="texts: .txt (one per line), .csv, .tsv or .jsonl (see --text-column)")
    p.add_argument("--text-column", default="text", help="the column of --file that holds the texts (default: text)")
    p.add_argument("--out", help="write .jsonl or .csv here instead of JSON lines on standard output")
    p.add_argument("--batch-size", type=int, help="texts per batch (default: the run's train.eval_batch_size)")
    return p.parse_intermixed_args(argv)


@cli.entry_point("sentlab.predict")
def main(argv=None) -> int:
    args = parse_args(argv)
    refs = args.compare or args.args[:1]
    texts = args.args if args.compare else args.args[1:]
    if not refs:
        raise ConfigError(f"MODEL: no model given ({cli.MODEL_HELP})")
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size: must be 1 or more, got {args.batch_size}")
    if args.out and Path(args.out).suffix.lower() not in OUTPUTS:
        raise ConfigError(f"--out: unknown format of {args.out} (use .jsonl or .csv)")
    if args.file:
        texts += read_texts(args.file, args.text_column)
    elif not texts and not sys.stdin.isatty():
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise ConfigError("texts: none given (as arguments, with --file, or on standard input)")

    from sentlab import mlflow_model

    mlflow_model.use_store(args.tracking_uri)
    if args.compare:
        frame = compare(refs, texts, args.batch_size)
    else:
        frame = mlflow_model.load(refs[0]).predict(texts, args.batch_size)
        frame.insert(0, "text", texts)
    write(frame, args.out)
    return 0


if __name__ == "__main__":
    cli.run(main)
