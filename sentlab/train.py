"""Train one configuration, or a sweep of them with -m.

python -m sentlab.train                            # MiniLM + LoRA on the demo data
python -m sentlab.train backbone=roberta data=sst2 lora.r=16
python -m sentlab.train -m lora.r=8,16,32          # one MLflow parent run, a child per job
python -m sentlab.train resume=RUN_ID              # continue a stopped run from its last checkpoint
"""

from __future__ import annotations

import sys
import traceback

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sentlab.config import check_group_choices
from sentlab.errors import ConfigError, RunError


@hydra.main(version_base="1.3", config_path="pkg://sentlab.conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from sentlab import checkpoints, console, pipeline  # heavy imports after Hydra has parsed the command line

    console.quiet_dependencies()
    hydra_cfg = HydraConfig.get()
    sweep_dir = hydra_cfg.sweep.dir if hydra_cfg.mode == RunMode.MULTIRUN else None
    try:
        result = pipeline.run(
            cfg, overrides=list(hydra_cfg.overrides.task), sweep_dir=sweep_dir, hydra_dir=hydra_cfg.runtime.output_dir
        )
    except checkpoints.Stopped as stop:  # SIGTERM/SIGINT: the run is KILLED at a checkpoint; a sweep stops too
        stop.exit()
    except Exception as err:
        explained = isinstance(err, (ConfigError, RunError))  # the message says it all: no traceback
        if sweep_dir is None:
            if not explained:
                raise
            print(f"sentlab: error: {err}", file=sys.stderr)
            sys.exit(2 if isinstance(err, ConfigError) else 1)
        # A sweep goes on: the job's run is FAILED with its error, the sweep's summary counts it and the
        # sweep exits non-zero at the end (Hydra's sweepers would stop at the first failed job).
        detail = str(err) if explained else traceback.format_exc()
        print(f"sentlab: job {hydra_cfg.job.num} failed: {detail}", file=sys.stderr)
        return float("nan")  # an optimizing sweeper records the trial as failed
    return result["val"][cfg.train.select_metric]  # what an optimizing sweeper maximizes


if __name__ == "__main__":
    try:
        check_group_choices(sys.argv[1:])
    except ConfigError as error:
        print(f"sentlab: error: {error}", file=sys.stderr)
        sys.exit(2)
    main()
