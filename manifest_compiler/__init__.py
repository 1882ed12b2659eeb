"""mcompile: compile experiment manifests into SLURM + Apptainer job directories.

Importing the package is cheap on purpose: `mcompile validate` must not pay for
jinja2 or deepdiff, so every stage module imports its heavy dependencies itself.
"""

__version__ = "0.1.0"

SCHEMA_VERSIONS = (1,)
