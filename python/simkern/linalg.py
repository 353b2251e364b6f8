"""Deprecated alias: the sketch family (FWHT, sketches, sketched least squares) lives in ``simkern._sketch`` and is
used as ``simkern.fwht``, ``simkern.sketch``, ``simkern.lstsq_sketched``; one name for the family, as its kernels
(``kernel_names()["sketch"]``) and its benchmark (``bench/bench_sketch.py``) have. Kept for code that imported
``simkern.linalg``."""

from __future__ import annotations

import warnings

from ._sketch import SKETCH_KINDS, SketchedLstsqResult, fwht, lstsq_sketched, sketch, sketch_rows_rule

__all__ = ["SKETCH_KINDS", "SketchedLstsqResult", "fwht", "lstsq_sketched", "sketch", "sketch_rows_rule"]

warnings.warn("simkern.linalg is deprecated: use simkern.sketch / simkern.lstsq_sketched / simkern.fwht (the module "
              "is simkern._sketch)", DeprecationWarning, stacklevel=2)
