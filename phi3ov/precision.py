"""Which inference precision a device computes in, and why.

OpenVINO keeps a model's weights as stored (int4, int8...) but computes activations in the device's
*inference precision*. The CPU plugin picks bf16 by itself where the CPU has native bf16 units
(AMX-BF16, and in OpenVINO 2026.4 also AVX512-BF16 without AMX) and f32 elsewhere; greedy text differs
between the two. `--ov-config INFERENCE_PRECISION_HINT=...` overrides it. `resolve()` says which one
a pipeline will use and why, in one line for `phi3ov doctor` and `phi3ov bench`:

    bf16: this CPU has AMX-BF16 (OpenVINO's default there)
    f32: set by --ov-config INFERENCE_PRECISION_HINT=f32

What a device really ran is the compiled model's own INFERENCE_PRECISION_HINT (a CPU without bf16
units runs f32 whatever is asked); `effective()` reads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HINT = "INFERENCE_PRECISION_HINT"
MODE = "EXECUTION_MODE_HINT"
CPUINFO = Path("/proc/cpuinfo")
_NAMES = {"bf16": "bf16", "bfloat16": "bf16", "f32": "f32", "fp32": "f32", "float32": "f32", "f16": "f16",
          "fp16": "f16", "float16": "f16", "dynamic": "f32", "undefined": "f32"}


@dataclass(frozen=True)
class Precision:
    precision: str  # "bf16", "f32", "f16", or "unknown"
    reason: str
    source: str  # "config" (the user's --ov-config), "default" (the plugin's own choice) or "unknown"

    def __str__(self) -> str:
        return f"{self.precision}: {self.reason}"


def normalize(value: Any) -> str:
    """"bf16" from an OpenVINO Type, "BF16", "bfloat16"...; "f32" for "dynamic" (the model's own f32)."""
    name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return _NAMES.get(name.strip().lower(), name.strip().lower())


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The flags of the first CPU in /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def explain(device: str, properties: Mapping[str, Any], default: str, capabilities: Iterable[str],
            flags: Iterable[str]) -> Precision:
    """The precision and its reason from what is known: the configured properties, the plugin's default
    (`get_property(device, INFERENCE_PRECISION_HINT)`), its OPTIMIZATION_CAPABILITIES and the CPU flags."""
    flags, capabilities = set(flags), {c.upper() for c in capabilities}
    if properties.get(HINT):
        return Precision(normalize(properties[HINT]), f"set by --ov-config {HINT}={properties[HINT]}", "config")
    if str(properties.get(MODE, "")).upper() == "ACCURACY":
        return Precision("f32", f"--ov-config {MODE}=ACCURACY (OpenVINO computes in the model's own f32)", "config")
    default = normalize(default)
    if not device.upper().startswith("CPU"):
        return Precision(default, f"OpenVINO's default on {device}", "default")
    if default == "bf16":
        if "amx_bf16" in flags:
            why = "this CPU has AMX-BF16"
        elif "avx512_bf16" in flags:
            why = "this CPU has AVX512-BF16, no AMX"
        else:
            why = "OpenVINO lists BF16 among this CPU's capabilities" if "BF16" in capabilities else "this CPU"
        return Precision("bf16", f"{why} (OpenVINO's default there)", "default")
    if default == "f32":
        units = sorted(flags & {"amx_bf16", "avx512_bf16"})
        if not units and "BF16" not in capabilities:
            return Precision("f32", "no AMX/bf16 units (OpenVINO's default)", "default")
        return Precision("f32", f"OpenVINO's default here, although the CPU has {', '.join(units) or 'BF16'}", "default")
    return Precision(default, f"OpenVINO's default on this CPU ({', '.join(sorted(capabilities)) or 'no capabilities listed'})",
                     "default")


def resolve(device: str = "CPU", properties: Mapping[str, Any] | None = None, core: Any = None) -> Precision:
    """The inference precision `device` will compute in with `properties` (e.g. the --ov-config ones)."""
    properties = dict(properties or {})
    if properties.get(HINT) or str(properties.get(MODE, "")).upper() == "ACCURACY":
        return explain(device, properties, "", (), ())
    try:
        if core is None:
            import openvino as ov

            core = ov.Core()
        default = core.get_property(device, HINT)
        try:
            capabilities = list(core.get_property(device, "OPTIMIZATION_CAPABILITIES"))
        except Exception:  # noqa: BLE001 - optional: the reason is only less precise without it
            capabilities = []
    except Exception as err:  # noqa: BLE001 - a device OpenVINO cannot open: say so, don't fail the caller
        from .errors import reason

        return Precision("unknown", f"OpenVINO cannot tell for {device} ({reason(err)[:120]})", "unknown")
    return explain(device, properties, default, capabilities, cpu_flags())


def effective(compiled: Any) -> str:
    """What a compiled model (ov.CompiledModel) really computes in: "bf16", "f32"..."""
    return normalize(compiled.get_property(HINT))
