"""The accuracy recipes of sentlab/conf/experiment/ (docs/benchmarks/recipes.md) run end to end: their real backbone
(MiniLM, MPNet), their LoRA targets and trained modules, on their real data files, with a few rows."""

from __future__ import annotations

import pytest
from conftest import FAST, SHARED_DATA, all_runs

RECIPES = {  # recipe: the folder of its data in ../shared/data
    "sst2_30min": "sst2",
    "sst2_30min_mpnet": "sst2",
    "rotten_tomatoes_minilm": "rotten_tomatoes",
    "tweet_eval_minilm": "tweet_eval_sentiment",
    "amazon_books_minilm": "amazon_multidomain",
    "imdb_minilm": "imdb",
}


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_trains_and_tests_on_its_data(recipe, train, store):
    train(f"experiment={recipe}", f"data.dir={SHARED_DATA / RECIPES[recipe]}", *FAST)
    (run,) = all_runs(store())
    assert run.info.status == "FINISHED"
    assert 0 <= run.data.metrics["test_accuracy"] <= 1
    # The recipe's own LoRA targets reached the model: more trainable weights than the backbone's default.
    default = {"minilm": 74_498, "mpnet": 887_042}[run.data.params["backbone.name"]]  # LoRA r=8 on q, v + head
    assert run.data.metrics["trainable_params"] > default
