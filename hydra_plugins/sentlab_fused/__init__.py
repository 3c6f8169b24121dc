"""sentlab's fused launcher (hydra/launcher=fused): the jobs of a LoRA sweep that differ only in adapter-side
settings train together, on one frozen base, in this process (sentlab.fused, sentlab.fused_pipeline);
hydra/launcher=fused_slurm (fused_submitit.py): the same groups, each one SLURM job (submitit).

Hydra finds it here, in the `hydra_plugins` namespace package; importing it is cheap (sentlab's training modules
are imported when a group runs).
"""
