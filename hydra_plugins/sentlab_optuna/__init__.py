"""sentlab's Hydra sweeper on current Optuna (hydra/sweeper=optuna, sentlab/conf/hydra/sweeper/optuna.yaml).

Hydra finds it here, in the `hydra_plugins` namespace package, the way it finds every plugin; this package only
imports Optuna when a sweep starts.
"""
