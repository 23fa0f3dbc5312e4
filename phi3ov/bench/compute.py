"""What this machine's matrix units can do: a short probe of OpenVINO's own matrix product, so prefill speed can be
read against a measured ceiling rather than a datasheet.

One fully connected layer of Phi-3-mini's widths (a prompt chunk of M tokens x 3072 -> 8192) is compiled three ways
and timed on the CPU plugin: bf16 (what OpenVINO computes in where the CPU has AVX512-BF16 or AMX), f32, and int8
(activations and weights quantized by FakeQuantize, which OpenVINO lowers to an integer product: VNNI or AMX-INT8).
The int8 figure is the ceiling for int4 weights too: OpenVINO's CPU plugin quantizes activations to int8 on the fly
(dynamic quantization) and computes int4-weight layers with the integer units.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

M, K, N = 1024, 3072, 8192  # a 1,024-token prompt chunk through Phi-3-mini's MLP up projection
PRECISIONS = ("int8", "bf16", "f32")


def _model(precision: str) -> Any:
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([M, K], ov.Type.f32, name="x")
    w = ops.constant(rng.standard_normal((N, K), dtype=np.float32) * 0.02)
    a, b = x.output(0), w.output(0)
    if precision == "int8":  # quantized on both sides: OpenVINO's low-precision pass makes it an integer product
        def fq(node: Any, low: float, high: float, levels: int) -> Any:
            lo, hi = ops.constant(np.float32(low)), ops.constant(np.float32(high))
            return ops.fake_quantize(node, lo, hi, lo, hi, levels).output(0)

        a, b = fq(a, 0.0, 4.0, 256), fq(b, -0.08, 0.08, 255)
    out = ops.matmul(a, b, transpose_a=False, transpose_b=True)
    return ov.Model([out], [x], f"probe-{precision}")


def probe(precision: str, runs: int = 7) -> dict[str, float]:
    """TFLOP/s (int8: tera-operations/s) of one M x K x N product in `precision`, median of `runs`."""
    import numpy as np
    import openvino as ov

    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True,
                              "INFERENCE_PRECISION_HINT": "f32" if precision == "f32" else "bf16"}
    compiled = ov.Core().compile_model(_model(precision), "CPU", config)
    request = compiled.create_infer_request()
    x = np.random.default_rng(1).uniform(0, 4, (M, K)).astype(np.float32)
    request.infer({0: x})  # warm up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        request.infer({0: x})
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return {"ms": round(seconds * 1000, 2), "tflops": round(2 * M * K * N / seconds / 1e12, 3),
            "kernel": _kernel(request)}


def _kernel(request: Any) -> str:
    """The primitive OpenVINO ran for the product (e.g. brgemm_avx512_amx, jit_avx512_core_bf16), if it says."""
    try:
        for info in request.get_profiling_info():
            if info.node_type.startswith(("FullyConnected", "MatMul")):
                return f"{info.exec_type}"
    except RuntimeError:
        pass
    return "?"


def machine_peak(runs: int = 7) -> dict[str, dict[str, float]]:
    """Every precision's probe: {"int8": {"ms", "tflops", "kernel"}, "bf16": ..., "f32": ...}."""
    return {precision: probe(precision, runs) for precision in PRECISIONS}


def prefill_tflops(model_flops_per_token: float, tokens_per_s: float) -> float:
    """The matrix work a prefill speed means (2 x weights per token, attention left out: a lower bound)."""
    return model_flops_per_token * tokens_per_s / 1e12
