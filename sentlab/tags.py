"""The MLflow tag keys sentlab writes and reads, in one place: the contract between runs, sweeps, compare and
the registry. A run's own process and how it ended:"""

CONFIG_HASH = "sentlab.config_hash"  # what a run computes (infrastructure keys left out): a sweep looks it up
SETTING_HASH = "sentlab.setting_hash"  # the same without the seeds: runs that share it are repeats
OVERRIDES = "sentlab.overrides"  # the job's command-line overrides, space-separated
TRIAL = "sentlab.trial"  # the Optuna trial number of a job of sentlab's Optuna sweeper
HOST = "sentlab.host"  # where the run's process lives: what tells a RUNNING run whose process died
PID = "sentlab.pid"
SUBMITIT_JOB = "sentlab.submitit_job"  # a run trained in a submitit job (SLURM, or its local executor): the job's id
RESUME_COMMAND = "sentlab.resume_command"  # a KILLED run: the command that continues it
PRUNED = "sentlab.pruned"  # an Optuna trial stopped early by the study's pruner ("after epoch 2 of 5")
ERROR = "error"  # a FAILED run: its error, in one line or a traceback
ZERO_SHOT = "sentlab.zero_shot"  # train.epochs=0: the untrained model, the baseline of a sweep
QUANT_FALLBACK = "sentlab.quant_fallback"  # quant=int8|nf4 trained in full precision (quant.fallback)
FUSED_GROUP = "sentlab.fused_group"  # trained in a fused sweep group (hydra/launcher=fused): the group's id

# What a run is of (searchable in the MLflow UI)
BACKBONE = "sentlab.backbone"
HEAD = "sentlab.head"
DATA = "sentlab.data"
QUANT = "sentlab.quant"

# Sweeps: a parent run and its children
SWEEP = "sentlab.sweep"  # "parent" on a sweep's parent run
SWEEP_ID = "sentlab.sweep_id"  # a sweep's identity: the same command again finds its parent by it
SWEEP_DIR = "sentlab.sweep_dir"  # Hydra's folder of the sweep's latest invocation
REUSES = "sentlab.reuses"  # a child that carries the results of a run that FINISHED elsewhere (its id)
SUMMARY = "sentlab.summary"
BEST_RUN_ID = "sentlab.best_run_id"
BEST_RUN_NAME = "sentlab.best_run_name"

# A registered model version made by a sweep: whether @champion moved to it, and why (sentlab.promotion)
PROMOTION = "sentlab.promotion"  # promoted | refused; sentlab.promotion.<number>: the paired comparison's numbers
PROMOTION_RULE = "sentlab.promotion_rule"  # tracking.promote: better | not_worse | always
PROMOTION_REASON = "sentlab.promotion_reason"  # one line: the rule, the difference, its interval and p
PROMOTION_AGAINST = "sentlab.promotion_against"  # the champion it was compared with ("version 3 (run ...)")

# An evaluation of a trained run on other data (sentlab.evaluate)
SOURCE_RUN_ID = "sentlab.source_run_id"
EVALUATE = "sentlab.evaluate"

# MLflow's own
PARENT_RUN_ID = "mlflow.parentRunId"
NOTE = "mlflow.note.content"
GIT_COMMIT = "mlflow.source.git.commit"
# An experiment's kind (MLflow 3): "custom_model_development" is what the UI's "Machine learning" choice writes; it
# opens the experiment on its training runs (untagged, the UI may open the GenAI view of traces instead).
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"

# Tags that belong to the run that wrote them, not to its results: a reusing child does not copy them.
OWN = (HOST, PID, SUBMITIT_JOB, RESUME_COMMAND, TRIAL, FUSED_GROUP)
