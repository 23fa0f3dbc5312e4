"""Which inference precision a device computes in, and why: the reason from given flags and properties,
and OpenVINO's real answer on this machine (no model needed)."""

from __future__ import annotations

import pytest

from phi3ov.precision import Precision, cpu_flags, explain, normalize, resolve

AMX = {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}
AVX512_BF16 = {"avx512f", "avx512_bf16"}
AVX2 = {"avx2", "fma"}


def test_the_users_ov_config_wins_over_the_plugins_default():
    p = explain("CPU", {"INFERENCE_PRECISION_HINT": "f32"}, "bf16", ["BF16", "FP32"], AMX)
    assert p == Precision("f32", "set by --ov-config INFERENCE_PRECISION_HINT=f32", "config")
    assert str(p) == "f32: set by --ov-config INFERENCE_PRECISION_HINT=f32"
    assert explain("CPU", {"INFERENCE_PRECISION_HINT": "BF16"}, "f32", [], AVX2).precision == "bf16"
    accuracy = explain("CPU", {"EXECUTION_MODE_HINT": "ACCURACY"}, "bf16", ["BF16"], AMX)
    assert accuracy.precision == "f32" and accuracy.source == "config" and "ACCURACY" in accuracy.reason


def test_the_default_is_explained_by_the_cpus_bf16_units():
    assert str(explain("CPU", {}, "bf16", ["BF16", "FP32", "INT8"], AMX)) == \
        "bf16: this CPU has AMX-BF16 (OpenVINO's default there)"
    assert str(explain("CPU", {}, "bf16", ["BF16", "FP32"], AVX512_BF16)) == \
        "bf16: this CPU has AVX512-BF16, no AMX (OpenVINO's default there)"
    assert str(explain("CPU", {}, "f32", ["FP32", "INT8"], AVX2)) == "f32: no AMX/bf16 units (OpenVINO's default)"
    # An OpenVINO that keeps f32 although the CPU has bf16 units says so rather than blaming the CPU.
    kept = explain("CPU", {}, "f32", ["BF16", "FP32"], AVX512_BF16)
    assert kept.precision == "f32" and "avx512_bf16" in kept.reason and kept.source == "default"


def test_other_devices_and_odd_type_names():
    assert str(explain("GPU.0", {}, "f16", [], AMX)) == "f16: OpenVINO's default on GPU.0"
    assert [normalize(x) for x in ("bfloat16", "FP32", "float16", "dynamic", " bf16 ")] == ["bf16", "f32", "f16", "f32", "bf16"]


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_bf16", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_on_this_machine_the_answer_is_openvinos_own():
    import openvino as ov

    core = ov.Core()
    default = normalize(core.get_property("CPU", "INFERENCE_PRECISION_HINT"))
    here = resolve("CPU")
    assert here.precision == default and here.source == "default" and here.reason
    flags = cpu_flags()
    if default == "bf16":
        assert ("has AMX-BF16" in here.reason) == ("amx_bf16" in flags)
    assert resolve("CPU", {"INFERENCE_PRECISION_HINT": "f32"}).precision == "f32"
    assert resolve("NO_SUCH_DEVICE").precision == "unknown"


@pytest.mark.parametrize("asked", ["f32", "bf16"])
def test_what_a_compiled_model_ran_is_read_back(asked):
    """f32 is always granted, bf16 wherever OpenVINO lists BF16; the compiled model says what it ran."""
    import numpy as np
    import openvino as ov

    from phi3ov.precision import effective

    x = ov.opset13.parameter([1, 64], ov.Type.f32)
    w = ov.opset13.constant(np.ones((64, 64), dtype=np.float32))
    model = ov.Model([ov.opset13.matmul(x, w, False, False)], [x])
    ran = effective(ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": asked}))
    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if asked == "f32" or "BF16" in capabilities:
        assert ran == asked
    else:
        assert ran in ("f32", "bf16")
