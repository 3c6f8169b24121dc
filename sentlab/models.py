"""The one way to build a run's model: the backbone with its head, quantized as configured, with what the run's
method trains (sentlab.methods: a fresh adapter or weights set trainable, or the trained ones from a folder) on a
device. Training and its DDP ranks, the MLflow model,
export, predict and evaluate all build through here."""

from __future__ import annotations

from pathlib import Path

import torch

from sentlab import backbones, methods, quant


def pick_device(name: str) -> torch.device:
    """train.device: auto is cuda when there is a GPU, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build(cfg, head, device: torch.device, adapter: str | Path | None = None, *, full_precision: bool = False):
    """The model of run config `cfg` for `head` (sentlab.heads), on `device`.

    adapter=None: the base as method.name trains it (a fresh peft adapter, or its own weights set trainable),
    ready to train (a quantized base prepared for k-bit training). adapter=FOLDER: what methods.save wrote there
    (a peft adapter, or the trained weights; with the seq_cls head, if any).
    full_precision: the base unquantized whatever quant says (what a merge folds the adapter into)."""
    quant.import_only_if_needed(cfg.quant)  # before peft is imported
    quantization = None if full_precision else quant.quantization_config(cfg.quant)
    base = backbones.load_model(
        head.model_class(),
        cfg.backbone,
        head.tokenizer,
        quantization_config=quantization,
        head_from_adapter=adapter is not None,
        **head.model_kwargs(),
    )
    if adapter is None:
        model = methods.build(quant.prepare(base, cfg.quant), method_of(cfg), cfg.lora, head.task_type)
    else:
        model = methods.load(base, adapter)
    return model.to(device)


def load_merged(head, folder: str | Path, device: torch.device):
    """A merged model (the adapter folded into the base: tracking.log_model=merged) saved in `folder`."""
    return head.model_class().from_pretrained(str(folder)).to(device)


def method_of(cfg):
    """The run's method config; lora for a run logged before runs had one."""
    from omegaconf import OmegaConf

    return cfg.get("method") or OmegaConf.create({"name": "lora"})
