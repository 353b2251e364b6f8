"""Runtime: CPU features, ISA caps (API and env var), thread defaults, show_runtime."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
import simkern


def _run(code: str, **env) -> str:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SIMKERN_")}
    full_env.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=120,
                         check=True)
    return out.stdout.strip()


def test_capabilities_and_levels():
    caps = simkern.capabilities()
    assert all(isinstance(v, bool) for v in caps.values())
    for key in ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16", "avx512_vbmi",
                "avx512_vnni"):
        assert key in caps
    levels = simkern.available_isas()
    assert levels[0] == "scalar"
    assert ("avx2" in levels) == (caps["avx2"] and caps["fma"] and caps["f16c"])
    assert ("avx512" in levels) == all(caps[k] for k in ("avx512f", "avx512bw", "avx512dq", "avx512vl"))
    assert simkern.active_isa() in levels


def test_set_max_isa_caps_and_restores():
    best = simkern.available_isas()[-1]
    assert simkern.set_max_isa("scalar") == "scalar"
    assert simkern.active_isa() == "scalar"
    assert simkern.kernel_names()["maxsim"]["float32"] == "maxsim_f32_scalar"
    assert simkern.set_max_isa("AVX512") == best  # case-insensitive, clamped to the CPU
    with simkern.max_isa("scalar"):
        assert simkern.active_isa() == "scalar"
    assert simkern.active_isa() == best
    with pytest.raises(ValueError, match="unknown ISA 'sse9'"):
        simkern.set_max_isa("sse9")
    with pytest.raises(TypeError, match="name must be a str"):
        simkern.set_max_isa(2)


def test_env_var_caps_the_level():
    assert _run("import simkern; print(simkern.active_isa())", SIMKERN_MAX_ISA="scalar") == "scalar"
    best = simkern.available_isas()[-1]
    assert _run("import simkern; print(simkern.active_isa())", SIMKERN_MAX_ISA="avx512") == best


def test_env_var_sets_default_threads():
    assert _run("import simkern; print(simkern.get_num_threads())", SIMKERN_NUM_THREADS="3") == "3"


def test_set_num_threads():
    before = simkern.get_num_threads()
    try:
        simkern.set_num_threads(5)
        assert simkern.get_num_threads() == 5
        with pytest.raises(ValueError, match="n must be >= 1"):
            simkern.set_num_threads(0)
        with pytest.raises(TypeError, match="n must be an int"):
            simkern.set_num_threads(2.0)
    finally:
        simkern.set_num_threads(before)


def test_show_runtime_reports_kernels_and_build():
    buf = io.StringIO()
    simkern.show_runtime(file=buf)
    text = buf.getvalue()
    assert f"simkern {simkern.__version__}" in text
    assert f"active={simkern.active_isa()}" in text
    assert simkern.kernel_names()["maxsim"]["float32"] in text
    assert "-march=native" not in text and "fast-math" not in text


def test_stub_file_lists_every_compiled_function():
    import ast
    import pathlib

    from simkern import _core

    stub = pathlib.Path(simkern.__file__).with_name("_core.pyi")
    tree = ast.parse(stub.read_text())
    stubbed = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    compiled = {name for name in dir(_core) if not name.startswith("__") and callable(getattr(_core, name))}
    assert stubbed == compiled


def test_kernel_names_cover_every_family():
    names = simkern.kernel_names()
    assert set(names) == {"maxsim", "pq", "fde", "hnsw", "fwht", "sketch"}
    assert set(names["pq"]) == {"float32", "scan8", "scan4"}
    with simkern.max_isa("scalar"):
        flat = [n for fam in simkern.kernel_names().values() for n in fam.values()]
        assert all(n.endswith("_scalar") for n in flat), flat


_NAMES = "import json, simkern; simkern.set_max_isa('avx512'); print(json.dumps(simkern.kernel_names()))"


@pytest.mark.skipif("avx512" not in simkern.available_isas(), reason="no AVX-512 on this CPU")
@pytest.mark.parametrize("fma512", ["half", "full"])
def test_avx512_level_runs_avx2_kernels_where_they_are_not_slower(fma512):
    import json

    names = json.loads(_run(_NAMES, SIMKERN_FMA512=fma512))
    info = json.loads(_run("import json; from simkern import _core; print(json.dumps(_core.dispatch_info()))",
                           SIMKERN_FMA512=fma512))
    assert info["fma512_full_rate"] == (fma512 == "full") and info["fma512_source"] == "SIMKERN_FMA512"
    assert names["fde"]["float32"] == "fde_avx2"  # the 512-bit FDE kernels are slower everywhere we measured
    assert names["hnsw"]["distances"] == "hnsw_avx512"
    assert names["pq"]["scan4"] == "scan4_x86"
    assert names["pq"]["scan8"] == ("scan8_vbmi" if simkern.capabilities()["avx512_vbmi"] else "scan8_scalar")
    if simkern.capabilities()["avx512_bf16"]:
        assert names["maxsim"]["bfloat16"] == "maxsim_bf16_avx512_dpbf16"
    wide = "avx512" if fma512 == "full" else "avx2"
    assert names["maxsim"]["float32"] == "maxsim_f32_avx512" and names["maxsim"]["float16"] == "maxsim_f16_avx512"
    # half rate: short query stacks run the avx2 tiles (the drivers' cost model); full rate: none
    short = {k: v for k, v in names["maxsim"].items() if k.endswith("_short_queries")}
    want_short = {"float32_short_queries": "maxsim_f32_avx2", "float16_short_queries": "maxsim_f16_avx2",
                  "bfloat16_short_queries": ("maxsim_bf16_avx512vl_dpbf16" if simkern.capabilities()["avx512_bf16"]
                                             else "maxsim_bf16_avx2")}
    assert short == ({} if fma512 == "full" else want_short)
    assert names["pq"]["float32"] == f"pq_{wide}"
    assert names["fwht"]["float"] == f"fwht_{wide}" and names["sketch"]["float"] == f"sketch_{wide}"


@pytest.mark.skipif("avx512" not in simkern.available_isas(), reason="no AVX-512 on this CPU")
def test_fma_probe_and_own_kernels_hook():
    from simkern import _core

    info = _run("import json; from simkern import _core; print(json.dumps(_core.dispatch_info()))")
    import json

    info = json.loads(info)
    assert info["fma512_source"] == "probe"
    assert info["fma256_flops_per_ns"] > 0 and info["fma512_flops_per_ns"] > 0
    assert info["fma512_full_rate"] == (info["fma512_flops_per_ns"] >= 1.5 * info["fma256_flops_per_ns"])
    with simkern.max_isa("avx512"):
        _core._set_own_kernels(True)
        try:
            own = simkern.kernel_names()
        finally:
            _core._set_own_kernels(False)
    flat = [n for fam in own.values() for n in fam.values() if not n.startswith("scan")]
    assert all("avx512" in n for n in flat), flat  # the own table has no substitutes, no short-query kernels
