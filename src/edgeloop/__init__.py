"""edgeloop: sense, learn and respond across tiers."""

import os as _os

# An edge process works on small blocks on few cores: multi-threaded BLAS costs more in
# hand-offs than it gains (the novelty detector's matrix products ran 5x slower with
# OpenBLAS's default threads on a 2-core gateway). Set before numpy loads; an explicit
# setting in the environment wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")

__version__ = "0.1.0"
__all__ = ["__version__"]
