"""Which jobs of a sweep can train together as one fused group (sentlab.multi_lora): the grouping rules only.

Jobs fuse when their composed configs differ only in adapter-side settings (ADAPTER_SIDE): each member of a
group keeps its own rank, alpha, dropout, learning rate and schedule, epochs and early stopping, and seed
(which seeds its initial weights, sentlab.multi_lora.init_*, and its data order, see below).
Anything else (backbone, quantization, head, data, max length, batch size, precision, target modules, ...)
means another base model or other batches, so another group. Infrastructure keys (tracking, run name, the
Optuna trial, checkpoint cadence: sentlab.tracking.INFRA_KEYS) never split groups.

    groups = group_jobs([cfg_0, cfg_1, ...], max_members=8)      # [[0, 2, 3], [1], ...]: indices into the jobs

Data order. A member trains on exactly the batches the same job alone trains on: epoch_batches(its seed,
epoch). Members of one seed therefore share one order, and their stacked batch is every member's batch as wide
as alone (no extra padding; with MultiLoraLinear's loop, bit-identical to the job alone). By default
(mix_seeds=False) train.seed splits groups, so that is every group: a grid over rank and learning rate fuses,
and a grid x seeds sweep fuses into one group per seed.

mix_seeds=True lets members of different seeds share a group, each still with its own batches: a step stacks
batch i of every member, padded to the longest of them. That keeps each member equal to its run alone, but
the padding costs, on 3,200 SST-2 rows with train.group_by_length (the default), +36 % token positions for 2
seeds, +78 % for 4 and +119 % for 8 (docs/benchmarks/fused_data_order.md): more than fusing saves on a CPU,
whose step time grows with the tokens. It can pay where a step is far from compute-bound (a GPU at small
batch sizes). One shared order (every member on the first member's seed) is not offered: a member's run would
no longer be the job it names (its train.seed would seed its initial weights but not its data), and seed
statistics (sentlab.compare) would lose the data-order part of their spread.

The seed also seeds data.max_samples' capping and the carving of a missing val split (data.seed defaults to
train.seed): where those apply, jobs of different seeds train on different rows and never fuse.
"""

from __future__ import annotations

import json

from omegaconf import OmegaConf

# The settings in which members of one group may differ: all on the adapter's side of the frozen base.
ADAPTER_SIDE = (
    "lora.r",
    "lora.alpha",
    "lora.dropout",
    "train.lr",
    "train.weight_decay",
    "train.warmup_ratio",
    "train.scheduler",
    "train.epochs",
    "train.patience",
    "train.seed",
)


def group_jobs(cfgs: list, max_members: int, mix_seeds: bool = False) -> list[list[int]]:
    """The jobs (composed run configs, in sweep order) as fused groups: lists of job indices, at most
    max_members each. Members keep the sweep's order, and groups are ordered by their first job; a job that
    cannot fuse (see why_alone) is a group of its own. mix_seeds: see the module's docstring."""
    if max_members < 1:
        raise ValueError(f"max_members must be at least 1, got {max_members}")
    groups: list[list[int]] = []
    open_group: dict[str, list[int]] = {}  # setting key -> the group of that key still taking members
    for i, cfg in enumerate(cfgs):
        if why_alone(cfg):
            groups.append([i])
            continue
        key = setting_key(cfg, mix_seeds)
        group = open_group.get(key)
        if group is None or len(group) >= max_members:
            group = open_group[key] = []
            groups.append(group)
        group.append(i)
    return groups


def setting_key(cfg, mix_seeds: bool = False) -> str:
    """What jobs of one group must share: the resolved config without the adapter-side settings (train.seed
    kept unless mix_seeds) and the infrastructure keys, and without data.seed where it selects no rows."""
    from sentlab.tracking import is_infra

    # The hydra node (present in a launcher's job configs) holds per-job values and resolvers of its own.
    data = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    if not data_seed_matters(data.get("data", {})):
        data.get("data", {}).pop("seed", None)

    free = set(ADAPTER_SIDE) - ({"train.seed"} if not mix_seeds else set())

    def keep(node, prefix=""):
        return {
            k: keep(v, f"{prefix}{k}.") if isinstance(v, dict) else v
            for k, v in node.items()
            if f"{prefix}{k}" not in free and not is_infra(f"{prefix}{k}")
        }

    return json.dumps(keep(data), sort_keys=True, default=str)


def data_seed_matters(data: dict) -> bool:
    """Does data.seed select rows? It seeds data.max_samples' capping and the carving of val from train when
    no val split is given (sentlab.data.load_data), nothing else."""
    capped = any(n is not None for n in (data.get("max_samples") or {}).values())
    splits = data.get("files") if data.get("dir") is not None else data.get("hub_splits")
    return capped or (splits or {}).get("val") is None


def why_alone(cfg) -> str | None:
    """Why a job cannot join a group (it then trains as today), or None."""
    if (method := cfg.get("method", {}).get("name", "lora")) != "lora":
        return f"method={method}: only plain LoRA members fuse"
    if cfg.train.get("class_weights") is not None:
        return "train.class_weights: the fused loss is unweighted"
    if cfg.lora.bias != "none":
        return f"lora.bias={cfg.lora.bias} trains the base's biases, which members would share"
    if cfg.train.get("num_processes", 1) != 1:
        return "train.num_processes > 1 (data-parallel runs train alone)"
    if cfg.train.epochs == 0:
        return "train.epochs=0 evaluates the untrained model: nothing to fuse"
    return None
