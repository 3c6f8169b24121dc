"""Train one configuration, or a sweep of them with -m.

    python -m sentlab.train                            # MiniLM + LoRA on the demo data
    python -m sentlab.train backbone=roberta data=sst2 lora.r=16
    python -m sentlab.train -m lora.r=8,16,32          # one MLflow parent run, a child per job
"""
from __future__ import annotations

import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sentlab.config import ConfigError

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # the repository's conf/


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    from sentlab import pipeline  # heavy imports after Hydra has parsed the command line

    hydra_cfg = HydraConfig.get()
    sweep_dir = hydra_cfg.sweep.dir if hydra_cfg.mode == RunMode.MULTIRUN else None
    try:
        result = pipeline.run(
            cfg, overrides=list(hydra_cfg.overrides.task), sweep_dir=sweep_dir, hydra_dir=hydra_cfg.runtime.output_dir
        )
    except Exception as err:
        if sweep_dir is None:  # a single run: one line for a bad setting, the traceback for anything else
            if isinstance(err, ConfigError):
                print(f"sentlab: error: {err}", file=sys.stderr)
                sys.exit(2)
            raise
        # A sweep goes on: the job's run is FAILED with its error, the sweep's summary counts it and the
        # sweep exits non-zero at the end (Hydra's sweepers would stop at the first failed job).
        detail = str(err) if isinstance(err, ConfigError) else traceback.format_exc()
        print(f"sentlab: job {hydra_cfg.job.num} failed: {detail}", file=sys.stderr)
        return float("nan")  # an optimizing sweeper records the trial as failed
    return result["val"][cfg.train.select_metric]  # what an optimizing sweeper maximizes


if __name__ == "__main__":
    main()
