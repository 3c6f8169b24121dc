"""Many LoRA adapters on one frozen base: the members of a fused sweep group train together.

A group of K members shares one copy of the base model. A training step stacks one batch per member along
the batch dimension ([K*b, ...], in member order); each frozen product runs once over the whole stack, and
each member's LoRA update and its own copy of the trained head apply to its own rows only:

    y = base(x) + concat over members k of  B_k A_k dropout_k(x_k) * alpha_k / r_k

Every member keeps its parameters as separate tensors (its own optimizer, schedule, weight decay and
clipping), and can leave the stack (early stopping). peft's own mixed-adapter batches cannot serve here: they
are inference-only.

Equal to the job alone. With no dropout anywhere, a member's losses and gradients are those of the same job
trained alone as a peft LoRA model, up to float rounding (tests/test_multi_lora.py states and holds the
tolerances): bit-identical on the shapes tested where every member's rows are as wide in the stack as alone
(one data order), within about 1e-4 of the largest gradient where the stack pads them further. "No dropout"
includes the backbone's own dropout layers, active in training: MiniLM and BERT-style models train with 0.1
hidden and attention dropout, whose masks a stacked batch draws differently from K separate batches; with
any dropout, the random draws are the only difference.

Evaluation: the seq_cls head evaluates every member on the same rows in one forward over the batch repeated
once per member (member_scores). The generative head evaluates one member at a time (set_active([name])): it
scores with a key/value cache of the prompt prefix computed on one row, which a stack cannot split among
members; so does an 8-bit base, whose bitsandbytes layers in eval mode pick their outlier columns over the
whole batch, which would couple the members' results.

    group = attach(model, lora_config, [Member("a", r=8, alpha=16, seed=1), Member("b", r=16, alpha=32, seed=2)])
    losses = member_losses(head, model, stack_batches([batch_a, batch_b], ...), group.rows(2 * b))
    sum(losses).backward()                     # each member's gradients are those of its own run
    group.remove("a")                          # early stop: from now on the stack is b's rows only
    group.export("b", folder)                  # an ordinary peft adapter (PeftModel.from_pretrained)

Initial weights are a pure function of (seed, module name) (init_lora, init_head_module), for a group member
and for a job alone (init_peft_model) alike, never of the global RNG's position.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# Head layers a backbone gets new (missing from a base checkpoint): initialised from (seed, name). Other
# modules_to_save (a pooler trained in full) start from the base's weights, as in peft.
NEW_HEAD_LAYERS = ("classifier", "pre_classifier", "score")
# The modules peft adds to modules_to_save for a SEQ_CLS model (PeftModelForSequenceClassification). peft
# matches them as name suffixes, so "classifier" also catches DistilBERT's pre_classifier.
SEQ_CLS_HEADS = ["classifier", "score"]


@dataclass(frozen=True)
class Member:
    """One job of a group: its adapter's shape and scale, its dropout, and the seed of its initial weights."""

    name: str  # unique in the group; a key in parameter names, so no dots
    r: int
    alpha: float
    dropout: float = 0.0
    seed: int = 0

    @property
    def scale(self) -> float:
        return self.alpha / self.r  # peft's scaling (rsLoRA's alpha / sqrt(r) is not supported)


class Stack:
    """The members that run, in stack order, and how many rows of a stacked batch each one has. One object is
    shared by every layer of a group, so that changing it changes them all at once."""

    def __init__(self, names):
        self.names: list[str] = list(names)
        self.sizes: list[int] | None = None  # rows per member; None: the rows split evenly

    def split(self, n_rows: int) -> list[int]:
        if self.sizes is not None:
            if sum(self.sizes) != n_rows:
                raise ValueError(f"a stacked batch of {n_rows} rows, but the members' rows add up to {sum(self.sizes)}")
            return self.sizes
        if n_rows % len(self.names):
            raise ValueError(
                f"a stacked batch of {n_rows} rows does not split evenly into {len(self.names)} members "
                "(set the rows of each with Group.set_sizes)"
            )
        return [n_rows // len(self.names)] * len(self.names)


# -- layers -------------------------------------------------------------------------------------------------


class MultiLoraLinear(nn.Module):
    """A frozen linear layer (torch, or bitsandbytes 8-bit / 4-bit) plus one LoRA update per member, each applied
    to its member's rows. lora_A[name] is [r, in] and lora_B[name] is [out, r], as peft's lora_A / lora_B weights.

    `batched`: compute the members' updates with two batched matmuls (ranks padded with zeros to the largest,
    see _batched) when every member has the same number of rows; otherwise one pair of matmuls per member."""

    batched = False  # the loop: exact, and no slower on a CPU (docs/benchmarks/multi_lora_matmul.md)

    def __init__(self, base_layer: nn.Module, stack: Stack):
        super().__init__()
        self.base_layer = base_layer
        self.stack = stack
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        self.lora_dropout = nn.ModuleDict()
        self.scaling: dict[str, float] = {}

    def add(self, member: Member, A: torch.Tensor, B: torch.Tensor) -> None:
        # Adapter weights in fp32 on the base's device, as peft keeps them (its autocast_adapter_dtype).
        device = _device(self.base_layer)
        self.lora_A[member.name] = nn.Parameter(A.to(device, torch.float32))
        self.lora_B[member.name] = nn.Parameter(B.to(device, torch.float32))
        self.lora_dropout[member.name] = nn.Dropout(member.dropout) if member.dropout > 0 else nn.Identity()
        self.scaling[member.name] = member.scale

    def remove(self, name: str) -> None:
        del self.lora_A[name], self.lora_B[name], self.lora_dropout[name], self.scaling[name]

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        names = self.stack.names
        if not names:
            return result
        sizes = self.stack.split(x.shape[0])
        # As peft: the adapter's input in the adapter's dtype (fp32; autocast still runs its matmuls in bf16),
        # its output in the base's. (peft's plain Linear adds before casting; the two differ only for a half-
        # precision base without autocast, which sentlab never builds.)
        x = x.to(self.lora_A[names[0]].dtype)
        if self.batched and len(names) > 1 and len(set(sizes)) == 1:
            delta = self._batched(x, names)
        else:
            delta = torch.cat([self._one(name, part) for name, part in zip(names, x.split(sizes))])
        return result + delta.to(result.dtype)

    def _one(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """peft's LoRA update for one member's rows, operation for operation: B(A(dropout(x))) * scaling."""
        A, B, dropout = self.lora_A[name], self.lora_B[name], self.lora_dropout[name]
        return F.linear(F.linear(dropout(x), A), B) * self.scaling[name]

    def _batched(self, x: torch.Tensor, names: list[str]) -> torch.Tensor:
        """All members' updates in two bmm calls over [K, rows, features] blocks.

        Ranks differ, so A and B are padded to the largest rank R with zero rows (A) and zero columns (B); the
        padding is made inside this forward from constants, never stored or trained. It cannot change results:
        the padded columns of h = x A^T are sums of x * 0 = exact zeros, and they meet B's zero columns, adding
        exact zeros to each output. Nor gradients: dL/dA_pad = (dL/dh)^T x and dL/dB_pad = (dL/dy)^T h are
        computed per entry, and F.pad's backward hands each member's parameter only its own (unpadded) entries;
        the padded columns of dL/dh are dy * 0 sums, exact zeros, feeding nothing. (Only an inf or NaN input,
        times a padded zero, would turn into NaN where peft gives inf: a run that is already lost.)
        """
        k = len(names)
        xs = x.reshape(k, -1, x.shape[-1])  # member k's rows are the k-th block
        if any(not isinstance(self.lora_dropout[n], nn.Identity) for n in names):
            xs = torch.stack([self.lora_dropout[n](part) for n, part in zip(names, xs.unbind(0))])
        rank = max(self.lora_A[n].shape[0] for n in names)
        A = torch.stack([F.pad(self.lora_A[n], (0, 0, 0, rank - self.lora_A[n].shape[0])) for n in names])
        B = torch.stack([F.pad(self.lora_B[n], (0, rank - self.lora_B[n].shape[1])) for n in names])
        delta = torch.bmm(torch.bmm(xs, A.transpose(1, 2)), B.transpose(1, 2))  # [K, rows, out]
        scales = torch.tensor([self.scaling[n] for n in names], dtype=torch.float32, device=delta.device)
        delta = (delta * scales[:, None, None]).to(delta.dtype)
        return delta.reshape(*x.shape[:-1], self.out_features)


class MemberModules(nn.Module):
    """A module trained in full (a modules_to_save module: the classification head, a pooler): each member has
    its own copy, applied to its own rows; `original` is the base's, frozen, used when no member runs."""

    def __init__(self, original: nn.Module, stack: Stack):
        super().__init__()
        self.original = original
        self.copies = nn.ModuleDict()
        self.stack = stack

    def add(self, name: str) -> nn.Module:
        module = copy.deepcopy(self.original)
        module.requires_grad_(True)
        self.copies[name] = module
        return module

    def remove(self, name: str) -> None:
        del self.copies[name]

    def forward(self, x: torch.Tensor, *args, **kwargs):
        names = self.stack.names
        if not names:
            return self.original(x, *args, **kwargs)
        sizes = self.stack.split(x.shape[0])
        return torch.cat([self.copies[n](part, *args, **kwargs) for n, part in zip(names, x.split(sizes))])


def _device(module: nn.Module) -> torch.device:
    return next(iter(module.parameters()), torch.empty(0)).device


# -- initial weights: a pure function of (seed, module name) --------------------------------------------------


def derived_seed(seed: int, name: str) -> int:
    """A 63-bit seed fixed by (seed, name) alone: the same in every process, on every machine and device."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") & (2**63 - 1)


def init_lora(r: int, in_features: int, out_features: int, seed: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [r, in], B [out, r]) for the LoRA layer at module path `name`: A as peft initialises it by default
    (kaiming-uniform, a=sqrt(5), as nn.Linear), drawn on the CPU from a generator seeded by (seed, name); B zeros."""
    A = torch.empty(r, in_features)
    nn.init.kaiming_uniform_(A, a=math.sqrt(5), generator=torch.Generator().manual_seed(derived_seed(seed, name)))
    return A, torch.zeros(out_features, r)


@torch.no_grad()
def init_head_module(model: nn.Module, module: nn.Module, seed: int, name: str) -> None:
    """Initialise `module` (a new head layer of `model`, at path `name`) as the model's own _init_weights would,
    each submodule from the global RNG reseeded by (seed, its path) inside fork_rng (the caller's RNG is left as
    it was). The draws are made on a CPU copy, so the weights are the same on every device."""
    for sub_name, sub in module.named_modules():
        own = dict(sub.named_parameters(recurse=False))
        if not own:
            continue
        on_cpu = copy.deepcopy(sub).to("cpu", torch.float32)
        for p in on_cpu.parameters(recurse=False):
            p._is_hf_initialized = False  # transformers' init functions skip tensors flagged as loaded
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(seed, f"{name}.{sub_name}" if sub_name else name))
            model._init_weights(on_cpu)
        fresh = dict(on_cpu.named_parameters(recurse=False))
        for key, p in own.items():
            p.copy_(fresh[key])


@torch.no_grad()
def init_peft_model(peft_model, seed: int, new_modules=NEW_HEAD_LAYERS) -> None:
    """Give a single-adapter peft model (get_peft_model, as sentlab.adapters.add_lora builds it) the initial
    weights a group member of the same seed gets: every LoRA A and B from init_lora, and each new head layer
    (modules_to_save whose name ends in one of `new_modules`) from init_head_module."""
    from peft.tuners.lora import LoraLayer
    from peft.utils import ModulesToSaveWrapper

    base = peft_model.get_base_model()
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            for adapter, lora_A in module.lora_A.items():
                A, B = init_lora(module.r[adapter], module.in_features, module.out_features, seed, name)
                lora_A.weight.copy_(A)
                module.lora_B[adapter].weight.copy_(B)
        elif isinstance(module, ModulesToSaveWrapper) and _is_new_head(name, new_modules):
            for copy_ in module.modules_to_save.values():
                init_head_module(base, copy_, seed, name)


def _is_new_head(name: str, new_modules) -> bool:
    return name.rsplit(".", 1)[-1] in new_modules


# -- a group on a model ----------------------------------------------------------------------------------------


class Group:
    """The members attached to one model (attach): which run, their parameters, their export as peft adapters."""

    def __init__(self, model: nn.Module, config, stack: Stack, layers: dict, heads: dict, new_modules):
        self.model = model
        self.config = config  # the peft LoraConfig as peft prepares it (targets resolved, SEQ_CLS heads added)
        self.stack = stack
        self.layers: dict[str, MultiLoraLinear] = layers  # by module path
        self.heads: dict[str, MemberModules] = heads  # by module path
        self.new_modules = tuple(new_modules)
        self.members: dict[str, Member] = {}

    # which members run
    @property
    def active(self) -> list[str]:
        return list(self.stack.names)

    def set_active(self, names) -> None:
        """Run these members, in this order, from the next forward on (the stacked batch follows the order)."""
        unknown = [n for n in names if n not in self.members]
        if unknown or len(set(names)) != len(names):
            raise ValueError(f"set_active: unknown or repeated members {names} (members: {list(self.members)})")
        self.stack.names[:] = names
        self.stack.sizes = None

    def set_sizes(self, sizes: list[int] | None) -> None:
        """Rows of each active member in the next stacked batches (None: equal shares)."""
        if sizes is not None and len(sizes) != len(self.stack.names):
            raise ValueError(f"set_sizes: {len(sizes)} sizes for {len(self.stack.names)} active members")
        self.stack.sizes = list(sizes) if sizes is not None else None

    def rows(self, n_rows: int) -> list[int]:
        """How the rows of a stacked batch of n_rows split over the active members."""
        return self.stack.split(n_rows)

    # members joining and leaving
    def add(self, member: Member) -> None:
        """A new member, its weights initialised from (member.seed, module name); it runs last in the stack."""
        if member.name in self.members or not member.name or "." in member.name:
            raise ValueError(f"member name {member.name!r}: must be new, non-empty and without dots")
        for path, layer in self.layers.items():
            layer.add(member, *init_lora(member.r, layer.in_features, layer.out_features, member.seed, path))
        for path, head in self.heads.items():
            module = head.add(member.name)
            if _is_new_head(path, self.new_modules):
                init_head_module(self.model, module, member.seed, path)
        self.members[member.name] = member
        self.stack.names.append(member.name)
        self.stack.sizes = None

    def remove(self, name: str) -> None:
        """Take a member out for good (its parameters are freed once nothing else holds them)."""
        for module in [*self.layers.values(), *self.heads.values()]:
            module.remove(name)
        del self.members[name]
        if name in self.stack.names:
            self.stack.names.remove(name)
        self.stack.sizes = None

    # one member's parameters, by the keys PeftModel.save_pretrained writes
    def parameters(self, name: str) -> dict[str, nn.Parameter]:
        """The trainable parameters of one member (for its own optimizer), keyed as in its saved peft adapter."""
        params = {}
        for path, layer in self.layers.items():
            params[f"base_model.model.{path}.lora_A.weight"] = layer.lora_A[name]
            params[f"base_model.model.{path}.lora_B.weight"] = layer.lora_B[name]
        for path, head in self.heads.items():
            for key, p in head.copies[name].named_parameters():
                params[f"base_model.model.{path}.{key}"] = p
        return params

    def state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """One member's weights, exactly as its peft adapter file holds them (head buffers included)."""
        state = {k: p.detach() for k, p in self.parameters(name).items()}
        for path, head in self.heads.items():
            for key, t in head.copies[name].state_dict().items():
                state[f"base_model.model.{path}.{key}"] = t.detach()
        return state

    @torch.no_grad()
    def load_state_dict(self, name: str, state: dict[str, torch.Tensor]) -> None:
        """Put back weights from state_dict(name) (a checkpoint, or the best epoch's weights)."""
        own = self.state_dict(name)
        if set(state) != set(own):
            raise KeyError(f"load_state_dict: keys differ for member {name!r}: {sorted(set(state) ^ set(own))[:5]}")
        for key, tensor in own.items():
            tensor.copy_(state[key])

    # export
    def peft_config(self, name: str):
        """The LoraConfig that PeftModel.save_pretrained writes for this member's job trained alone."""
        member = self.members[name]
        config = copy.deepcopy(self.config)
        config.r, config.lora_alpha, config.lora_dropout = member.r, member.alpha, member.dropout
        config.base_model_name_or_path = self.model.__dict__.get("name_or_path")
        config.inference_mode = True
        return config

    def export(self, name: str, folder) -> Path:
        """Write one member as an ordinary peft adapter folder (adapter_config.json, adapter_model.safetensors),
        as PeftModel.save_pretrained writes for the same job run alone; PeftModel.from_pretrained loads it."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.peft_config(name).save_pretrained(str(folder))
        state = {k: t.contiguous() for k, t in self.state_dict(name).items()}
        save_file(state, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
        self._model_card(folder)
        return folder

    def _model_card(self, folder: Path) -> None:
        """README.md as PeftModel.save_pretrained writes it (create_or_update_model_card) for a LoRA adapter."""
        from huggingface_hub import ModelCard, ModelCardData
        from peft import __version__

        card = ModelCard.from_template(ModelCardData())
        card.data["library_name"] = "peft"
        name = self.model.__dict__.get("name_or_path")
        card.data["tags"] = sorted(
            {*(getattr(self.model, "model_tags", None) or []), "transformers", "lora", f"base_model:adapter:{name}"}
        )
        if str(self.config.task_type) in ("CAUSAL_LM", "TaskType.CAUSAL_LM"):
            card.data.pipeline_tag = "text-generation"
        card.data["base_model"] = name
        # (peft means to list a quantized base's settings too, but reads them from a dict as an attribute: never.)
        card.text = "\n".join([*card.text.splitlines(), f"### Framework versions\n\n- PEFT {__version__}"])
        card.save(str(folder / "README.md"))


def attach(model: nn.Module, config, members: list[Member], new_modules=NEW_HEAD_LAYERS) -> Group:
    """Put a group of LoRA members into a loaded transformers model (in place) and freeze its base.

    `config` is the peft LoraConfig the same job would get alone (sentlab.adapters.lora_config); its target
    modules and modules_to_save (plus the SEQ_CLS head, as peft adds it) are found as peft finds them, its r,
    alpha and dropout are each member's own. Supported: plain LoRA (bias none, no DoRA / rsLoRA / rank or alpha
    patterns) on nn.Linear layers, bitsandbytes' Linear8bitLt and Linear4bit among them (GPT-2's Conv1D is not).
    `new_modules`: head layers the checkpoint lacks, initialised from each member's seed (see init_head_module).
    """
    from peft.tuners.tuners_utils import check_target_module_exists

    config = _prepared(copy.deepcopy(config), model)
    model.requires_grad_(False)
    stack = Stack([])
    names = [n for n, _ in model.named_modules()]
    heads = {}
    for name in names:  # as peft's _set_trainable: names that end with a modules_to_save entry
        if any(name.endswith(m) for m in config.modules_to_save or []) and not any(
            name.startswith(h + ".") for h in heads
        ):
            heads[name] = _replace(model, name, lambda m: MemberModules(m, stack))
    layers = {}
    for name in names:
        if any(name == h or name.startswith(h + ".") for h in heads):
            continue
        if not check_target_module_exists(config, name):
            continue
        module = model.get_submodule(name)
        if not isinstance(module, nn.Linear):  # bitsandbytes' quantized layers are nn.Linear subclasses
            raise NotImplementedError(
                f"multi_lora: target module {name} is a {type(module).__name__}; only "
                "linear layers (torch or bitsandbytes) are supported"
            )
        layers[name] = _replace(model, name, lambda m: MultiLoraLinear(m, stack))
    if not layers:
        raise ValueError(f"multi_lora: target_modules {config.target_modules} match no module of this model")
    group = Group(model, config, stack, layers, heads, new_modules)
    for member in members:
        group.add(member)
    return group


def _prepared(config, model):
    """The LoraConfig as get_peft_model prepares it: default targets for the architecture, SEQ_CLS heads added
    to modules_to_save (PeftModelForSequenceClassification); unsupported settings refused."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    unsupported = {
        "bias": config.bias != "none",
        "use_dora": config.use_dora,
        "use_rslora": config.use_rslora,
        "lora_bias": config.lora_bias,
        "rank_pattern": bool(config.rank_pattern),
        "alpha_pattern": bool(config.alpha_pattern),
        "layers_to_transform": config.layers_to_transform is not None,
        "init_lora_weights": config.init_lora_weights is not True,
        "fan_in_fan_out": config.fan_in_fan_out,
        "target_parameters": bool(config.target_parameters),
    }
    if bad := [k for k, v in unsupported.items() if v]:
        raise NotImplementedError(f"multi_lora: LoraConfig settings not supported in a group: {', '.join(bad)}")
    if config.target_modules is None:
        targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model.config.model_type)
        if targets is None:
            raise ValueError(f"multi_lora: no default target modules for {model.config.model_type}; set them")
        config.target_modules = set(targets)
    if str(config.task_type) in ("SEQ_CLS", "TaskType.SEQ_CLS"):
        config.modules_to_save = [*(config.modules_to_save or []), *SEQ_CLS_HEADS]
    return config


def _replace(model: nn.Module, name: str, wrap) -> nn.Module:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    wrapped = wrap(getattr(parent, child))
    setattr(parent, child, wrapped)
    return wrapped


# -- batches and losses ------------------------------------------------------------------------------------------


def stack_batches(batches: list[dict], pad_token_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """One stacked batch from one collated batch per member, in member order: token tensors ([rows, length])
    padded to the longest member batch on `padding_side` (input_ids with pad_token_id, masks and type ids with
    0), per-row tensors (labels) concatenated."""
    width = max(b["input_ids"].shape[1] for b in batches)
    stacked = {}
    for key in batches[0]:
        parts = [b[key] for b in batches]
        if parts[0].dim() == 2:
            value = pad_token_id if key == "input_ids" else 0
            pads = [(width - p.shape[1], 0) if padding_side == "left" else (0, width - p.shape[1]) for p in parts]
            parts = [F.pad(p, pad, value=value) for p, pad in zip(parts, pads)]
        stacked[key] = torch.cat(parts)
    return stacked


def member_losses(head, model: nn.Module, batch: dict, sizes: list[int]) -> list[torch.Tensor]:
    """Each member's training loss (what head.loss gives for its rows alone) from one forward pass over the
    stacked batch, whose rows split into the members' as `sizes` says. Train on their sum: each member's
    gradients are then those of its own run. (The model's own loss over a stacked batch would be the mean
    over all members' rows: 1/K of that.)"""
    labels = batch["labels"].split(sizes)
    if head.name == "seq_cls":  # single-label classification: the models' own CrossEntropyLoss (a mean)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits
        return [F.cross_entropy(part, gold) for part, gold in zip(logits.split(sizes), labels)]
    if head.name == "generative":
        from sentlab.heads import generative

        if head.single_token:  # as GenerativeHead.loss: cross-entropy at the last prompt position
            logits = generative._forward(model, batch["input_ids"], batch["attention_mask"], keep=1)[:, -1]
            gold = head.label_table[:, 0].to(logits.device)[batch["labels"]]
            return [F.cross_entropy(part.float(), g) for part, g in zip(logits.split(sizes), gold.split(sizes))]
        log_probs, mask = head._continue(model, batch, batch["labels"])  # mean NLL over the label tokens
        return [-lp.sum() / m.sum() for lp, m in zip(log_probs.split(sizes), mask.split(sizes))]
    raise NotImplementedError(f"member_losses: head {head.name!r}")


def member_scores(head, model: nn.Module, batch: dict, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each of k members' evaluation of the same rows, from one forward over the batch repeated k times: what
    head.evaluate_batch gives for the member alone (its mean loss and label log-probabilities). seq_cls only:
    the generative head's evaluation runs one member at a time (see above)."""
    if head.name != "seq_cls":
        raise NotImplementedError(f"member_scores: head {head.name!r} evaluates one member at a time")
    labels = batch["labels"]
    inputs = {key: v.repeat(k, *[1] * (v.dim() - 1)) for key, v in batch.items() if key != "labels"}
    logits = model(**inputs).logits
    parts = logits.split(len(labels))
    return [(F.cross_entropy(part, labels), torch.log_softmax(part.float(), dim=-1)) for part in parts]
