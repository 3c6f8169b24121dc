"""LoRA adapters (peft) on the backbone: only the adapter and the head train."""

from __future__ import annotations

from omegaconf import OmegaConf

from sentlab.errors import ConfigError


def lora_config(lora, task_type: str):
    """peft's LoraConfig for the `lora` config node; `task_type` is peft's (SEQ_CLS saves the head with the
    adapter). One place builds it, for a job trained alone (add_lora) and for a member of a fused group."""
    from peft import LoraConfig

    return LoraConfig(
        task_type=task_type,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=OmegaConf.to_object(lora.target_modules) if lora.target_modules is not None else None,
        bias=lora.bias,
        modules_to_save=OmegaConf.to_object(lora.modules_to_save) if lora.modules_to_save is not None else None,
    )


def add_lora(model, lora, task_type: str):
    """Wrap `model` in a peft LoRA model; `task_type` is peft's (SEQ_CLS saves the head with the adapter)."""
    from sentlab import methods

    return methods.wrap(model, lora_config(lora, task_type), "lora.target_modules")


def parameter_counts(model) -> dict[str, float]:
    """Trainable and total parameters, and the trainable share in percent."""
    trainable, total = model.get_nb_trainable_parameters()
    return {"trainable_params": trainable, "total_params": total, "trainable_pct": 100.0 * trainable / total}


def merge(model):
    """Fold the LoRA weights into the base weights (peft's merge_and_unload): a plain transformers
    model that predicts the same, with no adapter overhead. Refused for a 4-bit base, where the
    merged weights would have to be re-quantized (changing the predictions); merge into the
    full-precision base instead (load it with quant=none and the saved adapter)."""
    from sentlab import quant as quantization

    # Decided by the model's own layers (not quant.name): a run that fell back to full precision merges.
    if quantization.is_4bit(model):
        raise ConfigError(
            "quant: cannot merge a LoRA adapter into a 4-bit base model (re-quantizing the merged weights "
            "changes the predictions); load the base with quant=none, add the adapter, then merge"
        )
    return model.merge_and_unload()
