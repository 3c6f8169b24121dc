"""tracking.registered_model: a single run registers its model; a sweep registers its best run's model when it
ends and points the alias `champion` at it; models:/NAME@champion loads and predicts like the run's URI."""

from __future__ import annotations

from conftest import FAST, all_runs, tiny_args


def test_sweep_registers_its_best_run_as_champion(tiny_models, train, store, runs_dir):
    from sentlab import mlflow_model

    model = [*tiny_args(tiny_models, "bert"), *FAST, "tracking.registered_model=reviews"]
    train(*model, "run_name=single")
    client = store()
    (single,) = client.search_model_versions("name = 'reviews'")
    assert int(single.version) == 1 and single.aliases == []

    train("-m", *model, "lora.r=2,4", "train.lr=1e-3,5e-3")
    children = {r.info.run_id: r for r in all_runs(client) if r.data.tags.get("mlflow.parentRunId")}
    versions = client.search_model_versions("name = 'reviews'")
    assert len(versions) == 2  # the sweep's jobs register nothing; the sweep registers its best run once
    champion = client.get_model_version_by_alias("reviews", "champion")
    assert int(champion.version) == 2 and champion.run_id in children
    best_score = max(r.data.metrics["val_f1_macro"] for r in children.values())  # tiny models often tie
    assert children[champion.run_id].data.metrics["val_f1_macro"] == best_score
    best = children[champion.run_id]

    mlflow_model.mlflow.set_tracking_uri(f"sqlite:///{runs_dir}/mlflow.db")
    texts = ["a fine kettle, works well", "broke after a day"]
    by_alias = mlflow_model.load("models:/reviews@champion").predict(texts)
    by_run = mlflow_model.load(f"runs:/{best.info.run_id}/model").predict(texts)
    assert by_alias.equals(by_run)
