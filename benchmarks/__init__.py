"""The asv suite of udlbench: speed (``time_``), memory (``peakmem_``) and accuracy (``track_``)
of the unrolled kernels, the gradient estimators, the reference lasso and the baselines, across
commits. Run it with ``bash scripts/asv_quick.sh`` (CI) or ``asv run`` (see README)."""
