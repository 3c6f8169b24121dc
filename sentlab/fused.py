"""Which jobs of a sweep can train together as one fused group (sentlab.multi_lora): the grouping rules only.

Jobs fuse when their composed configs differ only in adapter-side settings (ADAPTER_SIDE): each member of a
group keeps its own rank, alpha, dropout, learning rate and schedule, epochs and early stopping, and seed.
Anything else (backbone, quantization, head, data, max length, batch size, precision, target modules, ...)
means another base model or other batches, so another group. Infrastructure keys (tracking, run name, the
Optuna trial, checkpoint cadence: sentlab.tracking.INFRA_KEYS) never split groups.

    groups = group_jobs([cfg_0, cfg_1, ...], max_members=8)      # [[0, 2, 3], [1], ...]: indices into the jobs

Data order when members' seeds differ: each member trains on its own batches, epoch_batches(its seed, epoch),
as the same job alone does, and the stacked batch pads every member's rows to the longest member batch of the
step. That keeps every member's run equal to its run alone (issue 19's requirement), at a padding cost that
bench/fused_data_order.py measures (docs/benchmarks/fused_data_order.md). Members whose seeds are equal have
the same batches and no extra padding; to avoid the cost, sweep seeds in separate groups (grid jobs of one
seed fuse with each other).

The seed also seeds data.max_samples' capping and the carving of a missing val split (data.seed defaults to
train.seed): where those apply, jobs of different seeds train on different rows and do not fuse.
"""
from __future__ import annotations

import json

from omegaconf import OmegaConf

# The settings in which members of one group may differ: all on the adapter's side of the frozen base.
ADAPTER_SIDE = ("lora.r", "lora.alpha", "lora.dropout", "train.lr", "train.weight_decay", "train.warmup_ratio",
                "train.scheduler", "train.epochs", "train.patience", "train.seed")


def group_jobs(cfgs: list, max_members: int) -> list[list[int]]:
    """The jobs (composed run configs, in sweep order) as fused groups: lists of job indices, at most
    max_members each. Members keep the sweep's order, and groups are ordered by their first job; a job that
    cannot fuse (see why_alone) is a group of its own."""
    if max_members < 1:
        raise ValueError(f"max_members must be at least 1, got {max_members}")
    groups: list[list[int]] = []
    open_group: dict[str, list[int]] = {}  # setting key -> the group of that key still taking members
    for i, cfg in enumerate(cfgs):
        if why_alone(cfg):
            groups.append([i])
            continue
        key = setting_key(cfg)
        group = open_group.get(key)
        if group is None or len(group) >= max_members:
            group = open_group[key] = []
            groups.append(group)
        group.append(i)
    return groups


def setting_key(cfg) -> str:
    """What jobs of one group must share: the resolved config without the adapter-side settings and the
    infrastructure keys (and without data.seed where it selects no rows, see data_seed_matters)."""
    from sentlab.tracking import is_infra

    # The hydra node (present in a launcher's job configs) holds per-job values and resolvers of its own.
    data = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    if not data_seed_matters(data.get("data", {})):
        data.get("data", {}).pop("seed", None)

    def keep(node, prefix=""):
        return {k: keep(v, f"{prefix}{k}.") if isinstance(v, dict) else v for k, v in node.items()
                if f"{prefix}{k}" not in ADAPTER_SIDE and not is_infra(f"{prefix}{k}")}

    return json.dumps(keep(data), sort_keys=True, default=str)


def data_seed_matters(data: dict) -> bool:
    """Does data.seed select rows? It seeds data.max_samples' capping and the carving of val from train when
    no val split is given (sentlab.data.load_data), nothing else."""
    capped = any(n is not None for n in (data.get("max_samples") or {}).values())
    splits = data.get("files") if data.get("dir") is not None else data.get("hub_splits")
    return capped or (splits or {}).get("val") is None


def why_alone(cfg) -> str | None:
    """Why a job cannot join a group (it then trains as today), or None."""
    if cfg.lora.bias != "none":
        return f"lora.bias={cfg.lora.bias} trains the base's biases, which members would share"
    if cfg.train.get("num_processes", 1) != 1:
        return "train.num_processes > 1 (data-parallel runs train alone)"
    if cfg.train.epochs == 0:
        return "train.epochs=0 evaluates the untrained model: nothing to fuse"
    return None
