"""The one way to build a run's model: the backbone with its head, quantized as configured, with what the run's
method trains (sentlab.methods: a fresh adapter or weights set trainable, or the trained ones from a folder) on a
device. Training and its DDP ranks, the MLflow model,
export, predict and evaluate all build through here."""

from __future__ import annotations

from pathlib import Path

import torch

from sentlab import adapters, backbones, methods, multi_lora, quant


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
    base = _base(cfg, head, full_precision, head_from_adapter=adapter is not None)
    if adapter is None:
        method = method_of(cfg)
        model = methods.build(quant.prepare(base, cfg.quant), method, cfg.lora, head.task_type)
        if method.name == "lora":  # initial weights from (train.seed, module name): where a fused member starts
            multi_lora.init_peft_model(model, cfg.train.seed)
    else:
        model = methods.load(base, adapter)
    return model.to(device)


def build_group(cfg, head, device: torch.device, members: list[multi_lora.Member]) -> multi_lora.Group:
    """The model of a fused sweep group (sentlab.fused_training): one base as `build` loads it for run config
    `cfg`, with every member's LoRA adapter and head attached (sentlab.multi_lora), on `device`."""
    base = quant.prepare(_base(cfg, head, full_precision=False, head_from_adapter=False), cfg.quant)
    group = multi_lora.attach(base, adapters.lora_config(cfg.lora, head.task_type), members)
    group.model.to(device)
    return group


def _base(cfg, head, full_precision: bool, head_from_adapter: bool):
    quant.import_only_if_needed(cfg.quant)  # before peft is imported
    quantization = None if full_precision else quant.quantization_config(cfg.quant)
    return backbones.load_model(
        head.model_class(),
        cfg.backbone,
        head.tokenizer,
        quantization_config=quantization,
        head_from_adapter=head_from_adapter,
        **head.model_kwargs(),
    )


def load_merged(head, folder: str | Path, device: torch.device):
    """A merged model (the adapter folded into the base: tracking.log_model=merged) saved in `folder`."""
    return head.model_class().from_pretrained(str(folder)).to(device)


def method_of(cfg):
    """The run's method config; lora for a run logged before runs had one."""
    from omegaconf import OmegaConf

    return cfg.get("method") or OmegaConf.create({"name": "lora"})
