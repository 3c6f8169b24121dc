"""Quantization of the base model (bitsandbytes); classification heads always stay in full precision.

    quant=none   full precision
    quant=int8   LLM.int8() weights (8-bit)
    quant=nf4    4-bit NormalFloat, optional double quantization: QLoRA's setting

Quantized weights are frozen; LoRA adapters (full precision) train on top of them after peft's
k-bit preparation. When bitsandbytes cannot run here, `quant.fallback` decides: `error` stops
before the run starts, `full_precision` warns and loads the model unquantized (the run is tagged
`sentlab.quant_fallback`).
"""

from __future__ import annotations

import functools
import warnings

from sentlab.errors import ConfigError

# Modules that must never be quantized: a quantized head cannot train (peft #1720), and a 2-row
# output layer does not even load in 4-bit. lm_head (embed_out in older GPT-NeoX code) is the LM output layer.
HEAD_MODULES = ["classifier", "pre_classifier", "score", "lm_head", "embed_out"]


@functools.cache
def unavailable() -> str | None:
    """Why bitsandbytes cannot run on this machine, or None when it can (a tiny quantize op is tried)."""
    try:
        import bitsandbytes as bnb
        import torch
    except Exception as err:  # ImportError, or a broken native library
        return f"bitsandbytes cannot be imported ({type(err).__name__}: {err})"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        weight = torch.randn(64, 64, device=device)
        bnb.functional.quantize_4bit(weight, quant_type="nf4")
        bnb.functional.int8_vectorwise_quant(weight.half())
    except Exception as err:  # no backend for this device
        return f"bitsandbytes has no working backend on {device} ({type(err).__name__}: {str(err)[:200]})"
    return None


def import_only_if_needed(quant) -> None:
    """peft imports bitsandbytes whenever it is installed, and on CPU that import logs a warning about optional
    kernels. A run that quantizes nothing hides the package from this process (a None entry in sys.modules: import
    and find_spec then report it missing); a later quantized run in the same process (a sweep job) brings it back,
    with the availability checks that transformers and peft cached forgotten."""
    import sys

    hidden = "bitsandbytes" in sys.modules and sys.modules["bitsandbytes"] is None
    if quant.name == "none":
        sys.modules.setdefault("bitsandbytes", None)  # no-op once it is imported
    elif hidden:
        del sys.modules["bitsandbytes"]
        for module in ("transformers.utils.import_utils", "peft.import_utils"):
            for name, function in getattr(sys.modules.get(module), "__dict__", {}).items():
                if ("bnb" in name or "bitsandbytes" in name) and hasattr(function, "cache_clear"):
                    function.cache_clear()
        unavailable.cache_clear()


def torch_dtype(name: str):
    """fp32 | bf16 | fp16 as a torch dtype."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def check(quant) -> str | None:
    """Before the run starts: can bitsandbytes quantize here? If not, quant.fallback=error is a ConfigError, and
    quant.fallback=full_precision a warning and the reason, returned (the run's tag `sentlab.quant_fallback`)."""
    if quant.name == "none" or not (reason := unavailable()):
        return None
    if quant.fallback == "error":
        raise ConfigError(
            f"quant: quant={quant.name} needs bitsandbytes, but {reason} "
            "(use quant=none, or quant.fallback=full_precision to train unquantized with a warning)"
        )
    warnings.warn(f"quant={quant.name}: {reason}; training in FULL PRECISION instead (quant.fallback)", stacklevel=2)
    return f"full_precision: {reason}"


def quantization_config(quant):
    """transformers' BitsAndBytesConfig for `quant.name` (settings checked by sentlab.config), or None: full
    precision, or bitsandbytes cannot run here (check() has said so before the run started)."""
    if quant.name == "none" or unavailable():
        return None
    from transformers import BitsAndBytesConfig

    if quant.name == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=HEAD_MODULES)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.quant_type,
        bnb_4bit_use_double_quant=bool(quant.double_quant),
        bnb_4bit_compute_dtype=torch_dtype(quant.compute_dtype),
        llm_int8_skip_modules=HEAD_MODULES,
    )


def prepare(model, quant):
    """Make a quantized model trainable with adapters (no-op at full precision).

    peft's k-bit preparation freezes the base, casts the remaining float weights (norms, heads) to
    fp32 and, if quant.gradient_checkpointing, trades compute for activation memory.
    """
    if not getattr(model, "is_quantized", False):
        return model
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=bool(quant.get("gradient_checkpointing", False)),
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    cpu_4bit_workaround(model)
    return model


def cpu_4bit_workaround(model) -> None:
    """bitsandbytes 0.50 on CPU repacks 4-bit weights into an inference-only layout on the first
    no_grad forward, after which training fails; turning that path off keeps train/eval/train working."""
    try:
        import bitsandbytes as bnb
    except Exception:
        return
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def is_4bit(model) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False)) or any(
        type(m).__name__ == "Linear4bit" for m in model.modules()
    )
