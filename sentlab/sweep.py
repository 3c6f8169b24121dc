"""Sweeps as MLflow experiments: a Hydra callback that opens one parent run before the jobs start (or, for the
same sweep command again, continues it) and, when they are done, prints and logs the sweep's summary
(finished, failed, reused, best run).

Jobs themselves (sentlab.pipeline.run) nest under the parent, resume their interrupted runs, answer configs
that already FINISHED with that run's results, and record their own failures; sentlab.train keeps a failed
job from stopping the sweep (a stop signal does stop it).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback

from sentlab import tags

SUMMARY_FILE = "summary.json"  # in the sweep's folder and on the parent run


# Sweeper settings that say how long or how wide a sweep runs, not what it is: a larger n_trials continues a study.
HOW_LONG = ("hydra.sweeper.n_trials", "hydra.sweeper.n_jobs")


def sweep_id(config) -> str:
    """A sweep's identity (tag `sentlab.sweep_id`; the name of an Optuna sweep's study): its experiment and its
    overrides, the preset and the sweeper's settings included, `force`, n_trials and n_jobs left out. Running the
    same sweep command again finds its parent run by it."""
    overrides = [o for o in config.hydra.overrides.task if not o.startswith("force=")]
    overrides += [
        o for o in config.hydra.overrides.hydra if o.startswith("hydra.sweeper.") and o.split("=")[0] not in HOW_LONG
    ]
    text = json.dumps([config.tracking.experiment, sorted(overrides)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SweepCallback(Callback):
    """Creates the store, the experiment and the sweep's parent run (or finds the parent of the same sweep) once,
    before any job starts, so that parallel jobs never race on creating them; each job nests its run under it."""

    def on_multirun_start(self, config, **kwargs) -> None:
        from hydra.utils import get_class

        from sentlab import console, tracking
        from sentlab.config import check_tracking
        from sentlab.errors import ConfigError

        console.quiet_dependencies()
        try:  # here, before the sweep's parent run exists: bad input leaves no run behind
            check_tracking(config.tracking)  # tracking.promote: what the sweep's end does with its best run
            for plugin in (config.hydra.sweeper, config.hydra.launcher):
                try:
                    plugin_class = get_class(plugin._target_)
                except Exception:  # a plugin that cannot be loaded: Hydra says so when it instantiates it
                    plugin_class = None
                if hasattr(plugin_class, "check"):  # sentlab's Optuna sweeper and fused launcher check their settings
                    plugin_class.check(config)
        except ConfigError as error:
            print(f"sentlab: error: {error}", file=sys.stderr)
            sys.exit(2)
        experiment_id = tracking.connect(config.tracking)
        sweep_dir = Path(config.hydra.sweep.dir)
        overrides = list(config.hydra.overrides.task)
        client = tracking.mlflow.MlflowClient()
        identity = sweep_id(config)
        parent_tags = {
            tags.SWEEP: "parent",
            tags.SWEEP_ID: identity,
            tags.SWEEP_DIR: str(sweep_dir),
            tags.OVERRIDES: " ".join(overrides),
        }
        found = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{tags.SWEEP_ID}` = '{identity}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if found:  # the same sweep command again: it continues its parent run
            parent_id = found[0].info.run_id
            client.update_run(parent_id, status="RUNNING")
            client.set_tag(parent_id, tags.SWEEP_DIR, str(sweep_dir))
            print(f"sweep: continuing MLflow parent run {parent_id}")
        else:
            name = config.run_name or f"sweep {time.strftime('%Y-%m-%d %H:%M:%S')}"
            parent_id = client.create_run(experiment_id, run_name=name, tags=parent_tags).info.run_id
            print(f"sweep: MLflow parent run {parent_id}")
        # Overrides with one value are the same in every job: left out of the child run names.
        parsed = OverridesParser.create().parse_overrides(overrides)
        fixed = [text for text, o in zip(overrides, parsed) if not o.is_sweep_override()]
        sweep_dir.mkdir(parents=True, exist_ok=True)
        info = {"parent_run_id": parent_id, "fixed_overrides": fixed}
        (sweep_dir / tracking.SWEEP_FILE).write_text(json.dumps(info, indent=1))
        self.parent_run_id, self.sweep_dir = parent_id, sweep_dir

    def on_multirun_end(self, config, **kwargs) -> None:
        from sentlab import tracking

        summary = summarize(self.parent_run_id, config.train.select_metric)
        client = tracking.mlflow.MlflowClient()
        client.log_batch(
            self.parent_run_id,
            metrics=[
                tracking.mlflow.entities.Metric(k, v, int(time.time() * 1000), 0) for k, v in summary["metrics"].items()
            ],
            tags=[tracking.mlflow.entities.RunTag(k, v) for k, v in summary["tags"].items()],
        )
        client.log_dict(self.parent_run_id, summary["data"], SUMMARY_FILE)
        (self.sweep_dir / SUMMARY_FILE).write_text(json.dumps(summary["data"], indent=1))
        print(summary["text"])
        if summary["data"]["repeated"]:  # settings over several seeds: their aggregated table goes to the parent
            from sentlab import comparison

            comparison.report(client, config.runs_dir, sweep=self.parent_run_id)
        if config.tracking.get("registered_model") and summary["data"]["best"]:
            register_best(config.tracking, summary["data"]["best"]["run_id"])
        client.set_terminated(self.parent_run_id, "FAILED" if summary["data"]["failed"] else "FINISHED")
        if summary["data"]["failed"]:
            sys.exit(1)  # after the whole sweep has run: a script or CI sees that some jobs failed


def summarize(parent_run_id: str, select_metric: str) -> dict:
    """Finished, reused, pruned (an Optuna trial stopped early: KILLED with tag `sentlab.pruned`, not a failure) and
    failed jobs of a sweep and its best run by the validation metric (among the finished and reused). A job is its
    config (tag `sentlab.config_hash`): when a rerun of the sweep ran it again, its latest child run counts.

    A child still RUNNING when the sweep ends lost its process (killed, e.g. out of memory): it is marked KILLED,
    and the next run of the sweep resumes it from its last checkpoint.
    """
    from sentlab import tracking

    jobs = _jobs(tracking.mlflow.MlflowClient(), parent_run_id)
    reused = [r for r in jobs if r.info.status == "FINISHED" and tags.REUSES in r.data.tags]
    finished = [r for r in jobs if r.info.status == "FINISHED" and tags.REUSES not in r.data.tags]
    pruned = [r for r in jobs if r.info.status == "KILLED" and tags.PRUNED in r.data.tags]  # not a failure
    failed = [r for r in jobs if r.info.status != "FINISHED" and r not in pruned]

    settings = [r.data.tags[tags.SETTING_HASH] for r in finished + reused if tags.SETTING_HASH in r.data.tags]
    key = f"val_{select_metric}"
    scored = [r for r in finished + reused if math.isfinite(r.data.metrics.get(key, math.nan))]
    best = max(scored, key=lambda r: r.data.metrics[key], default=None)

    lines = [
        f"sweep: {len(finished)} finished, {len(failed)} failed, {len(reused)} reused "
        f"(already FINISHED elsewhere; force=true reruns them)"
        + (f", {len(pruned)} pruned (stopped early by the Optuna pruner)" if pruned else "")
        + f"; parent run {parent_run_id}"
    ]
    lines += [
        f"  {r.info.status:<7} {r.info.run_name}: {r.data.tags.get(tags.ERROR, '?').splitlines()[0][:200]}"
        for r in failed
    ]
    if best is not None:
        lines.append(f"  best    {best.info.run_name}: {key}={best.data.metrics[key]:.4f} (run {best.info.run_id})")
    lines.append(f"  compare: python -m sentlab.compare --sweep {parent_run_id}")

    def row(run):
        return {"run_id": run.info.run_id, "run_name": run.info.run_name, key: run.data.metrics.get(key)}

    data = {
        "finished": [row(r) for r in finished],
        "failed": [{**row(r), "status": r.info.status, "error": r.data.tags.get(tags.ERROR)} for r in failed],
        "reused": [{**row(r), "reuses": r.data.tags[tags.REUSES]} for r in reused],
        "pruned": [{**row(r), "pruned": r.data.tags[tags.PRUNED]} for r in pruned],
        "best": row(best) if best else None,
        "select_metric": key,
        "repeated": len(set(settings)) < len(settings),  # some setting ran with several seeds
    }
    metrics = {
        "sweep_finished": len(finished),
        "sweep_failed": len(failed),
        "sweep_reused": len(reused),
        "sweep_pruned": len(pruned),
    }
    summary_tags = {tags.SUMMARY: "\n".join(lines)[:5000]}
    if best is not None:
        metrics[f"best_{key}"] = best.data.metrics[key]
        summary_tags.update({tags.BEST_RUN_ID: best.info.run_id, tags.BEST_RUN_NAME: best.info.run_name})
    return {"text": "\n".join(lines), "data": data, "metrics": metrics, "tags": summary_tags}


def _jobs(client, parent_run_id: str) -> list:
    """A sweep's jobs: its child runs, the latest per config; children left RUNNING by a killed process are
    marked KILLED first."""
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    search = f"tags.`{tags.PARENT_RUN_ID}` = '{parent_run_id}'"
    for run in client.search_runs([experiment_id], filter_string=search + " and attributes.status = 'RUNNING'"):
        client.set_tag(run.info.run_id, tags.ERROR, "the job ended without closing its run (process killed?)")
        client.set_terminated(run.info.run_id, "KILLED")
    children = client.search_runs(
        [experiment_id], filter_string=search, max_results=50000, order_by=["attributes.start_time DESC"]
    )
    return list({r.data.tags.get(tags.CONFIG_HASH, r.info.run_id): r for r in reversed(children)}.values())


def register_best(tracking, run_id: str) -> None:
    """Register the best run's model under tracking.registered_model; the alias `champion` moves to that version
    on evidence, as tracking.promote says (sentlab.promotion)."""
    from sentlab import promotion

    name = tracking.registered_model
    try:
        promotion.register(name, run_id, tracking.get("promote", "better"), tracking.get("promote_margin", 0.01))
    except Exception as err:  # e.g. a reused run logged before runs logged models: the sweep itself is done
        print(f"registry: could not register run {run_id} as {name!r}: {str(err).splitlines()[0]}", file=sys.stderr)
