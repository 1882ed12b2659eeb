"""Code the tests share: how SLURM reads a script, and how to run one outside SLURM."""
