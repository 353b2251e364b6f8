"""What an installed simkern promises a packager: its version, its metadata, its type marker, and a cheap import.
The release check (tools/wheel/release_check.sh) runs the suite against the wheel in a fresh venv and sets
SIMKERN_EXPECT_INSTALLED to that venv, so the first test also proves which copy the suite tested."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import simkern


def test_the_suite_tests_the_expected_install():
    venv = os.environ.get("SIMKERN_EXPECT_INSTALLED")
    if venv is None:
        pytest.skip("SIMKERN_EXPECT_INSTALLED is set by the release check only")
    assert os.path.realpath(simkern.__file__).startswith(os.path.realpath(venv) + os.sep), simkern.__file__


def test_version_is_the_distributions():
    assert simkern.__version__ == metadata.version("simkern")
    assert simkern.__version__ == simkern._core.build_info()["version"]


def test_metadata_a_packager_reads():
    meta = metadata.metadata("simkern")
    assert meta["License-Expression"] == "Apache-2.0"
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert {f"Programming Language :: Python :: 3.{m}" for m in (10, 11, 12, 13)} <= set(classifiers)
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Source", "Issues", "Changelog", "Documentation"} <= set(urls)
    files = {str(f) for f in metadata.files("simkern") or []}
    assert any(f.endswith("LICENSE") for f in files), "the license file is not in the distribution"
    assert Path(simkern.__file__).with_name("py.typed").is_file()  # PEP 561 (an editable install lists no files)


def test_import_does_not_load_ml_dtypes_and_bfloat16_still_works():
    """ml_dtypes costs ~0.6 s to import: simkern imports it only when it makes a bfloat16 array itself."""
    code = ("import json, sys, simkern; loaded = 'ml_dtypes' in sys.modules\n"
            "index = simkern.MultiVectorIndex(8, storage='bfloat16', ann='flat')\n"
            "print(json.dumps([loaded, 'ml_dtypes' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [False, True]


def test_bfloat16_recognised_without_a_module_global():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    from simkern._validate import BFLOAT16_MAX, bfloat16_dtype, is_bfloat16

    assert float(ml_dtypes.finfo(ml_dtypes.bfloat16).max) == BFLOAT16_MAX  # the constant multivector.py bounds by

    assert is_bfloat16(np.dtype(ml_dtypes.bfloat16)) and bfloat16_dtype() == np.dtype(ml_dtypes.bfloat16)
    assert not is_bfloat16(np.dtype(np.float16)) and not is_bfloat16(np.dtype(np.uint16))
