"""The fine-tuning method: which weights of the backbone train, how they are optimized, saved and merged.

    python -m sentlab.train method=dora                  # one file of conf/method/ (default: lora)
    python -m sentlab.train method=full train.lr=1e-4    # the baseline every PEFT result is judged against

One registry, METHODS, maps each name to a `Method` (as peft's own `register_peft_method` maps its tuners).
A method is built by a small function below; peft is imported inside those functions only. Three kinds:

- peft adapters (lora, dora, rslora, loraplus, pissa, olora, ia3, vera, loha, lokr, prefix, prompt):
  `get_peft_model` with the method's peft config. The LoRA family reads the `lora.*` keys (r, alpha, dropout,
  target_modules, bias, modules_to_save), so `-m lora.r=8,16,32` sweeps any of them; the others read their
  own keys in `method.*`. Saved as a peft adapter folder (adapter_config.json + adapter_model.safetensors,
  with the seq_cls head inside: peft's modules_to_save), reloaded with PeftModel.from_pretrained on the base.
- plain weights (bitfit, head_only, full): no peft; `requires_grad` is set on the model's own weights.
  Saved as one file, `trainable.safetensors`: the weights that trained, under their parameter names.
  Reloaded into the same base (loaded as for an adapter) with load_state_dict.
- no model (lexicon): VADER's rules, nothing trains (sentlab.lexicon).

What trains always includes the seq_cls head (classifier / pre_classifier / score). A method that does
not fit the head or the quantization is refused in one line naming the setting (`Method.refuse`, checked
before anything loads, and again by `build` from the model itself); a few refusals depend on the
backbone and are raised while building (prompt tuning on a decoder's seq_cls, prefix tuning on DistilBERT).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sentlab.errors import ConfigError

TASK_HEADS = {"SEQ_CLS": "seq_cls", "CAUSAL_LM": "generative"}  # peft's task type -> sentlab's head
WEIGHTS_FILE = "trainable.safetensors"  # what bitfit, head_only and full save (peft methods: an adapter folder)
# The layers a seq_cls head adds to a backbone (as sentlab.backbones.NEW_HEAD_LAYERS): they always train.
HEAD_LAYERS = ("classifier", "pre_classifier", "score")


@dataclass(frozen=True)
class Method:
    name: str
    summary: str  # one line: what trains
    build: Callable | None  # (model, method_cfg, lora_cfg, task_type) -> model; None: nothing to build (lexicon)
    refuse: dict[str, str] = field(default_factory=dict)  # "quant=nf4" / "head=generative" -> why, and what instead
    merges: bool = True  # peft's merge_and_unload folds it into the base weights (at full precision)
    saves: str = "adapter"  # "adapter" (a peft folder) | "weights" (WEIGHTS_FILE) | "nothing"
    lora_keys: bool = False  # reads lora.r / alpha / dropout / target_modules / bias / modules_to_save
    optimizer: Callable | None = None  # (model, train_cfg, method_cfg) -> optimizer; None: AdamW on what trains

    def supports(self, head: str, quant: str) -> bool:
        return f"head={head}" not in self.refuse and f"quant={quant}" not in self.refuse


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is registered twice")
    METHODS[method.name] = method
    return method


# -- peft adapters ---------------------------------------------------------------------------------------------


def _names(value) -> list[str] | str | None:
    """A module-list setting as peft takes it: a plain list, or a string as it is (a regex, "all-linear")."""
    return value if value is None or isinstance(value, str) else [str(v) for v in value]


def _lora_config(lora, task_type, **extra):
    from peft import LoraConfig

    return LoraConfig(
        task_type=task_type,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=_names(lora.target_modules),
        bias=lora.bias,
        modules_to_save=_names(lora.get("modules_to_save")),
        **extra,
    )


def wrap(model, config, setting: str):
    """get_peft_model, with peft's 'no module matched' turned into a ConfigError naming `setting`."""
    from peft import get_peft_model

    try:
        return get_peft_model(model, config)
    except ValueError as err:
        if "target" not in str(err):
            raise
        names = sorted({n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n and not n[-1].isdigit()})
        raise ConfigError(
            f"{setting}: {_names(getattr(config, 'target_modules', None))} matches no module of this "
            f"model; set it to some of: {', '.join(names)}"
        ) from err


def _lora(model, method, lora, task_type):
    return wrap(model, _lora_config(lora, task_type), "lora.target_modules")


def _dora(model, method, lora, task_type):
    # Weight-decomposed LoRA (Liu et al. 2024): a trained magnitude per output row besides the low-rank direction.
    return wrap(model, _lora_config(lora, task_type, use_dora=True), "lora.target_modules")


def _rslora(model, method, lora, task_type):
    # Rank-stabilized LoRA (Kalajdzievski 2023): the update scaled by alpha/sqrt(r) instead of alpha/r.
    return wrap(model, _lora_config(lora, task_type, use_rslora=True), "lora.target_modules")


def _pissa(model, method, lora, task_type):
    # PiSSA (Meng et al. 2024): A and B start as the top-r singular vectors of each weight, the base keeps the
    # residual. A reload repeats the exact SVD on the same base (deterministic), so the plain adapter folder
    # suffices; peft's fast randomized SVD ("pissa_niter_N") would draw another residual on reload.
    return wrap(model, _lora_config(lora, task_type, init_lora_weights="pissa"), "lora.target_modules")


def _olora(model, method, lora, task_type):
    # OLoRA (Büyükakyüz 2024): A and B start from a QR decomposition of each weight; the base keeps the rest.
    return wrap(model, _lora_config(lora, task_type, init_lora_weights="olora"), "lora.target_modules")


def _loraplus_optimizer(model, train_cfg, method_cfg):
    # LoRA+ (Hayou et al. 2024): B learns lr_ratio times faster than A. peft puts every 1-D weight (biases,
    # including the head's) in B's group and the head's matrix in A's.
    import torch
    from peft.optimizers import create_loraplus_optimizer

    return create_loraplus_optimizer(
        model,
        torch.optim.AdamW,
        lr=train_cfg.lr,
        loraplus_lr_ratio=method_cfg.lr_ratio,
        loraplus_weight_decay=train_cfg.weight_decay,
    )


def _ia3(model, method, lora, task_type):
    # (IA)^3 (Liu et al. 2022): learned vectors that rescale keys, values and feed-forward activations.
    from peft import IA3Config

    targets, feedforward = _names(method.get("target_modules")), _names(method.get("feedforward_modules"))
    if targets is None and _peft_default("IA3", model) is None:
        raise ConfigError(
            f"method.target_modules: peft has no (IA)^3 default for {model.config.model_type}; set "
            "method.target_modules and method.feedforward_modules (e.g. [k_lin,v_lin,lin2] and [lin2])"
        )
    config = IA3Config(
        task_type=task_type,
        target_modules=targets,
        feedforward_modules=feedforward,
        modules_to_save=_names(method.get("modules_to_save")),
    )
    return wrap(model, config, "method.target_modules")


def _vera(model, method, lora, task_type):
    # VeRA (Kopiczko et al. 2024): one pair of frozen random matrices shared by all layers; only two scaling
    # vectors per layer train, so r can be high at little cost.
    from peft import VeraConfig

    config = VeraConfig(
        task_type=task_type,
        r=method.r,
        vera_dropout=method.dropout,
        target_modules=_names(method.target_modules),
        modules_to_save=_names(method.get("modules_to_save")),
    )
    return wrap(model, config, "method.target_modules")


def _loha(model, method, lora, task_type):
    # LoHa (FedPara, Hyeon-Woo et al. 2022): the update is the Hadamard product of two low-rank products.
    from peft import LoHaConfig

    config = LoHaConfig(
        task_type=task_type,
        r=method.r,
        alpha=method.alpha,
        module_dropout=method.dropout,
        target_modules=_names(method.target_modules),
        modules_to_save=_names(method.get("modules_to_save")),
    )
    return wrap(model, config, "method.target_modules")


def _lokr(model, method, lora, task_type):
    # LoKr (LyCORIS): the update is a Kronecker product of a small matrix and a low-rank one.
    from peft import LoKrConfig

    config = LoKrConfig(
        task_type=task_type,
        r=method.r,
        alpha=method.alpha,
        module_dropout=method.dropout,
        target_modules=_names(method.target_modules),
        modules_to_save=_names(method.get("modules_to_save")),
    )
    return wrap(model, config, "method.target_modules")


def _virtual_token_sizes(model) -> dict:
    """The sizes peft's prompt learning needs, read through the config's attribute map (peft reads the raw
    dict and misses DistilBERT's dim / n_heads / n_layers)."""
    c = model.config
    return {"token_dim": c.hidden_size, "num_attention_heads": c.num_attention_heads, "num_layers": c.num_hidden_layers}


def _prefix(model, method, lora, task_type):
    # Prefix tuning (Li & Liang 2021): trained key/value vectors prepended in every layer (past_key_values).
    import inspect

    from peft import PrefixTuningConfig

    # peft checks this only in the first forward pass; the same test, before anything trains.
    if not any("past_key_values" in inspect.signature(m.forward).parameters for m in (model, model.base_model)):
        raise ConfigError(
            f"method=prefix: the backbone ({model.config.model_type}) takes no past key values, which "
            "prefix tuning needs; use method=prompt (virtual input tokens) or method=lora"
        )
    config = PrefixTuningConfig(
        task_type=task_type,
        num_virtual_tokens=method.num_virtual_tokens,
        prefix_projection=bool(method.get("projection", False)),
        **_virtual_token_sizes(model),
    )
    return wrap(model, config, "method")


def _prompt(model, method, lora, task_type):
    # Prompt tuning (Lester et al. 2021): trained input embeddings ("virtual tokens") before the text.
    from peft import PromptTuningConfig

    if task_type == "SEQ_CLS" and not _is_encoder(model.config):
        # peft feeds inputs_embeds, so a decoder's seq_cls pools the last position: a pad token on a right-padded
        # row (measured: a padded row scores unlike the same text alone). Prefix tuning passes input_ids: fine.
        raise ConfigError(
            f"method=prompt with head=seq_cls: a decoder ({model.config.model_type}) would pool a pad "
            "token (peft passes no input_ids to find the last real one); use method=prefix or method=lora"
        )
    text = method.get("init_text")
    config = PromptTuningConfig(
        task_type=task_type,
        num_virtual_tokens=method.num_virtual_tokens,
        prompt_tuning_init="TEXT" if text else "RANDOM",
        prompt_tuning_init_text=text,
        tokenizer_name_or_path=model.config._name_or_path if text else None,
        **_virtual_token_sizes(model),
    )
    return wrap(model, config, "method")


def _peft_default(kind: str, model):
    """peft's default target modules of `kind` (e.g. IA3) for this architecture, or None."""
    from peft.utils import constants

    mapping = getattr(constants, f"TRANSFORMERS_MODELS_TO_{kind}_TARGET_MODULES_MAPPING", {})
    return mapping.get(model.config.model_type)


def _is_encoder(config) -> bool:
    """A bidirectional encoder (BERT, RoBERTa, ...), as sentlab.heads.generative tells them apart."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False)


# -- plain weights (no peft) ------------------------------------------------------------------------------------


def _head_layers(model, task_type) -> list[str]:
    """The seq_cls head's layers present in this model (none for the generative head: its output layer is the
    vocabulary projection, part of the base)."""
    if task_type != "SEQ_CLS":
        return []
    return [name for name, _ in model.named_children() if name in HEAD_LAYERS]


def _train_only(model, keep: Callable[[str], bool]):
    for name, param in model.named_parameters():
        param.requires_grad_(keep(name))
    return model


def _head_only(model, method, lora, task_type):
    heads = _head_layers(model, task_type)
    return _train_only(model, lambda name: name.split(".")[0] in heads)


def _bitfit(model, method, lora, task_type):
    # BitFit (Ben Zaken et al. 2022): every bias term of the base trains, with the head.
    heads = _head_layers(model, task_type)
    model = _train_only(model, lambda name: name.split(".")[0] in heads or name.endswith(".bias"))
    if not any(p.requires_grad for n, p in model.named_parameters() if n.split(".")[0] not in heads):
        raise ConfigError(
            f"method=bitfit: the backbone ({model.config.model_type}) has no bias terms to train; "
            "use method=lora or method=ia3"
        )
    return model


def _full(model, method, lora, task_type):
    return _train_only(model, lambda name: True)


# -- the registry ------------------------------------------------------------------------------------------------
# refuse: measured with peft 0.21.2, transformers 5.23 and bitsandbytes 0.50.2 on CPU (tests/test_methods.py).

NO_GENERATIVE_VIRTUAL_TOKENS = (
    "the generative head passes position ids and shares a key/value cache across a batch, which peft's "
    "virtual tokens replace (a padded row scores unlike the same text alone); use head=seq_cls or method=lora"
)
QUANTIZED_FROZEN = "quantized weights are frozen integers and cannot train"

register(Method("lora", "low-rank updates A and B on the target modules (the default)", _lora, lora_keys=True))
register(
    Method(
        "dora",
        "LoRA plus a trained magnitude per output row (weight-decomposed)",
        _dora,
        lora_keys=True,
        refuse={
            "quant=int8": "peft's DoRA fails on 8-bit weights on bitsandbytes' CPU backend "
            "('NoneType' has no attribute 'unsqueeze'); use quant=nf4 or quant=none"
        },
    )
)
register(Method("rslora", "LoRA scaled by alpha/sqrt(r): higher ranks keep learning", _rslora, lora_keys=True))
register(
    Method(
        "loraplus",
        "LoRA with B's learning rate lr_ratio times A's (peft's LoRA+ optimizer)",
        _lora,
        lora_keys=True,
        optimizer=_loraplus_optimizer,
    )
)
register(
    Method(
        "pissa",
        "LoRA started from the top-r singular vectors of each weight",
        _pissa,
        lora_keys=True,
        refuse={
            q: "PiSSA's SVD needs full-precision weights (peft refuses quantized ones); use quant=none, "
            "or method=olora on a quantized base"
            for q in ("quant=int8", "quant=nf4")
        },
    )
)
register(Method("olora", "LoRA started from a QR decomposition of each weight", _olora, lora_keys=True))
register(Method("ia3", "learned vectors rescaling keys, values and feed-forward activations ((IA)^3)", _ia3))
register(Method("vera", "two trained scaling vectors per layer on shared frozen random matrices", _vera))
register(
    Method(
        "loha",
        "a Hadamard product of two low-rank products (LyCORIS)",
        _loha,
        refuse={
            "quant=nf4": "peft's LyCORIS layers read the packed 4-bit weight's shape and fail; "
            "use quant=int8, quant=none, or method=lora"
        },
    )
)
register(
    Method(
        "lokr",
        "a Kronecker product of a small and a low-rank matrix (LyCORIS)",
        _lokr,
        refuse={
            "quant=nf4": "peft's LyCORIS layers read the packed 4-bit weight's shape and fail; "
            "use quant=int8, quant=none, or method=lora"
        },
    )
)
register(
    Method(
        "prefix",
        "trained key/value vectors prepended in every layer",
        _prefix,
        merges=False,
        refuse={"head=generative": NO_GENERATIVE_VIRTUAL_TOKENS},
    )
)
register(
    Method(
        "prompt",
        "trained input embeddings (virtual tokens) before the text",
        _prompt,
        merges=False,
        refuse={"head=generative": NO_GENERATIVE_VIRTUAL_TOKENS},
    )
)
register(Method("bitfit", "the base's bias terms and the head", _bitfit, merges=False, saves="weights"))
register(
    Method(
        "head_only",
        "the classification head only: a linear probe on the frozen backbone",
        _head_only,
        merges=False,
        saves="weights",
        refuse={
            "head=generative": "the generative head has no classification layer of its own (its output "
            "layer is the vocabulary projection); use head=seq_cls"
        },
    )
)
register(
    Method(
        "full",
        "every weight: the full fine-tune every PEFT result is judged against",
        _full,
        merges=False,
        saves="weights",
        refuse={
            q: f"{QUANTIZED_FROZEN}; use quant=none, or method=lora on the quantized base (QLoRA)"
            for q in ("quant=int8", "quant=nf4")
        },
    )
)
register(
    Method(
        "lexicon",
        "nothing: VADER's lexicon and rules label the text (sentlab.lexicon)",
        None,
        merges=False,
        saves="nothing",
    )
)


# -- what the run calls ------------------------------------------------------------------------------------------


def get(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"method: unknown method {name!r} (one of: {', '.join(METHODS)})")
    return METHODS[name]


def check(name: str, head: str, quant: str) -> Method:
    """The method, or a ConfigError naming the setting it does not fit; needs no model (runs at config time)."""
    method = get(name)
    for setting in (f"head={head}", f"quant={quant}"):
        if setting in method.refuse:
            raise ConfigError(f"method={name} with {setting}: {method.refuse[setting]}")
    return method


def build(model, method_cfg, lora_cfg, task_type: str):
    """`model` (the backbone with its head, quantized and k-bit-prepared as configured) with what
    `method_cfg.name` trains set trainable; a PeftModel for the adapter methods, the model itself otherwise."""
    method = check(method_cfg.name, TASK_HEADS[task_type], quant_of(model))
    if method.build is None:
        raise ConfigError(f"method={method.name}: needs no model ({method.summary})")
    return method.build(model, method_cfg, lora_cfg, task_type)


def quant_of(model) -> str:
    """quant=none | int8 | nf4 as the model's own layers say (4-bit fp4 counts as nf4: the same refusals)."""
    kinds = {type(m).__name__ for m in model.modules()}
    return "nf4" if "Linear4bit" in kinds else "int8" if "Linear8bitLt" in kinds else "none"


def optimizer(model, train_cfg, method_cfg):
    """The method's optimizer (LoRA+'s parameter groups), else AdamW over every trainable weight."""
    import torch

    method = get(method_cfg.name)
    if method.optimizer is not None:
        return method.optimizer(model, train_cfg, method_cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)


def trainable_counts(model) -> dict[str, float]:
    """Trainable and total parameters, and the trainable share in percent (4-bit weights count as the weights
    they stand for, as peft counts them). On a peft model the total includes the adapter and peft's trained
    copy of the head."""
    trainable = total = 0
    for param in model.parameters():
        n = weights_in(param)
        total += n
        trainable += n if param.requires_grad else 0
    return {"trainable_params": trainable, "total_params": total, "trainable_pct": 100.0 * trainable / total}


def weights_in(param) -> int:
    """How many weights a parameter holds: a 4-bit one packs two per byte of its storage."""
    if type(param).__name__ == "Params4bit":
        return param.numel() * 2 * param.quant_storage.itemsize
    return param.numel()


def save(model, folder) -> None:
    """A peft model's adapter folder, or the trained weights of a plain method (WEIGHTS_FILE)."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model.save_pretrained(folder)
        return
    from safetensors.torch import save_file

    Path(folder).mkdir(parents=True, exist_ok=True)
    weights = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    if not weights:
        raise ValueError("nothing to save: no weight of the model is trainable (save right after training)")
    save_file(weights, Path(folder) / WEIGHTS_FILE, metadata={"format": "pt"})


def load(base, folder):
    """What `save` wrote, on a freshly loaded base (the same backbone, head and quantization as in training)."""
    folder = Path(folder)
    if (folder / "adapter_config.json").exists():
        from peft import PeftModel

        return PeftModel.from_pretrained(base, folder)
    if not (folder / WEIGHTS_FILE).exists():
        raise ConfigError(
            f"{folder}: neither a peft adapter (adapter_config.json) nor trained weights ({WEIGHTS_FILE})"
        )
    from safetensors.torch import load_file

    weights = load_file(folder / WEIGHTS_FILE, device=str(next(base.parameters()).device))
    result = base.load_state_dict(weights, strict=False)
    if result.unexpected_keys:
        raise ConfigError(
            f"{folder / WEIGHTS_FILE}: {len(result.unexpected_keys)} weights fit no parameter of the "
            f"base (e.g. {result.unexpected_keys[0]}): was it trained on another backbone or head?"
        )
    return base


def merge(model):
    """A plain transformers model that predicts the same: peft's merge_and_unload for the adapters that merge,
    the model itself for the plain methods (their weights are the model's). Full precision only: merged into
    int8 weights the logits moved by up to 2e-2 (re-quantization; tiny models), into 4-bit ones more."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return model
    if model.peft_config[model.active_adapter].is_prompt_learning:
        raise ConfigError(
            "merge: virtual tokens (method=prefix / prompt) are inputs, not weights: nothing to merge; "
            "export the adapter as it is"
        )
    if (kind := quant_of(model)) != "none":
        raise ConfigError(
            f"merge: cannot merge into a quant={kind} base (re-quantizing the merged weights changes "
            "the predictions); load the base with quant=none, add the saved adapter, then merge"
        )
    _unwrap_trained_copies(model)
    return model.merge_and_unload()


def _unwrap_trained_copies(model) -> None:
    """Put each modules_to_save copy (the trained head) in the place of its wrapper. peft's unload for (IA)^3,
    VeRA and LyCORIS fails on a wrapped head that is not one Linear layer (RoBERTa's classifier: "'Roberta-
    ClassificationHead' object has no attribute 'weight'"); LoRA's unload does this itself."""
    from peft.utils import ModulesToSaveWrapper

    adapter = model.active_adapter
    for name, module in list(model.base_model.model.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent_name, _, child = name.rpartition(".")
            parent = model.base_model.model.get_submodule(parent_name) if parent_name else model.base_model.model
            setattr(parent, child, module.modules_to_save[adapter])
