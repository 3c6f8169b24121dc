"""sentlab: Hydra + MLflow experiment management for LoRA/QLoRA sentiment classifiers."""

from pathlib import Path

from omegaconf import OmegaConf

PACKAGE_DIR = Path(__file__).resolve().parent

# `${sentlab_dir:}` in a config is the folder of this package (where the demo data lives).
if not OmegaConf.has_resolver("sentlab_dir"):
    OmegaConf.register_new_resolver("sentlab_dir", lambda: str(PACKAGE_DIR))
