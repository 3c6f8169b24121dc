"""What a run prints: sentlab's own story on the console, everything in the run's log file.

The one place where dependency noise is handled. Hydra's job logging (sentlab/conf/hydra/job_logging/sentlab.yaml)
sends every record to `<run's Hydra folder>/train.log` (logged to MLflow as `logs/train.log`) and, through
ConsoleFilter, only sentlab's own lines and other libraries' real warnings to the terminal.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager

# Messages (substrings) that are expected here and say nothing to a user: kept out of the console, kept in the log.
KNOWN_NOISE = (
    "kernels-community",  # bitsandbytes on CPU: an optional kernel package it looks for at import
    "LOAD REPORT",  # transformers' table of weights the checkpoint lacks: sentlab says it in one line of its own
    "`is_gradient_checkpointing` is deprecated",  # a FutureWarning raised inside transformers 5.23 itself
)


class ConsoleFilter(logging.Filter):
    """sentlab's records from INFO up; other libraries' from WARNING up, known noise never."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "sentlab" or record.name.startswith("sentlab."):
            return True
        if record.levelno < logging.WARNING:
            return False
        message = record.getMessage()
        return not any(noise in message for noise in KNOWN_NOISE)


def quiet_dependencies() -> None:
    """Route transformers' logs and Python warnings through logging (so they reach the log file and pass
    ConsoleFilter), and turn off the progress bars of datasets' maps and transformers' weight loading."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_warning()
    transformers.logging.disable_default_handler()
    transformers.logging.enable_propagation()
    transformers.logging.disable_progress_bar()
    mlflow = logging.getLogger("mlflow")  # MLflow gives its logger a console handler of its own
    mlflow.handlers.clear()
    mlflow.propagate = True
    logging.captureWarnings(True)


class _NoNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(noise in record.getMessage() for noise in KNOWN_NOISE)


@contextmanager
def quiet_loading():
    """Load a model as quietly in anyone's Python (a notebook, a script, `mlflow models serve`) as in a run: no weight
    loading bars, no load report, no known warning; transformers' settings as they were afterwards."""
    import warnings

    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    noise = _NoNoise()
    loggers = [logging.getLogger(name) for name in ("transformers.modeling_utils", "transformers")]
    for logger in loggers:
        logger.addFilter(noise)
    try:
        with warnings.catch_warnings():
            for message in KNOWN_NOISE:
                warnings.filterwarnings("ignore", message=f".*{re.escape(message)}")
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(noise)
        if bars:
            hf_logging.enable_progress_bar()


def run_cli(main) -> None:
    """Run an entry point outside Hydra (predict, evaluate, export) with the same console as a run's (on stderr,
    so that standard output carries only the results) and dependency noise off; exit with main()'s code."""
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ConsoleFilter())
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    quiet_dependencies()
    sys.exit(main())


def log_file() -> str | None:
    """The file the root logger writes to (the run's train.log under Hydra), flushed; None outside Hydra."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.flush()
            return handler.baseFilename
    return None
