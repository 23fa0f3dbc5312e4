"""A test-only hook that makes generation fail for real, inside the engine's own path.

Set `PHI3OV_FAULT_INJECT` before starting a server to show that a failure during one reply stays
local: that reply fails with a clear message, the others go on, and the next request is served
without a restart. It is read only when set; servers never set it.

    PHI3OV_FAULT_INJECT=after_tokens:N       a reply fails when it reaches N generated tokens: in the
                                             batching driver's step, while that reply's tokens are read
                                             (the replies beside it go on); in the single engine, inside
                                             the streamer callback that the pipeline calls
    PHI3OV_FAULT_INJECT=step_after_tokens:N  (batched) the whole step fails once any reply reaches N
                                             tokens: every reply in that step fails; the driver goes on

Every reply that reaches N tokens fails, so replies shorter than N are never touched.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from .errors import BadOptions

log = logging.getLogger(__name__)

ENV = "PHI3OV_FAULT_INJECT"
KINDS = ("after_tokens", "step_after_tokens")


class InjectedFault(RuntimeError):
    """The failure PHI3OV_FAULT_INJECT asked for."""


@dataclass(frozen=True)
class Fault:
    kind: str
    tokens: int

    def check(self, generated: int, kinds: tuple[str, ...] = KINDS) -> None:
        """Raise when a reply has generated the fault's token count and the fault is of one of `kinds`."""
        if self.kind in kinds and generated >= self.tokens:
            raise InjectedFault(f"injected fault after {self.tokens} tokens ({ENV}={self.kind}:{self.tokens})")


def from_env() -> Fault | None:
    """The fault asked for in PHI3OV_FAULT_INJECT, or None when it is not set (always, outside tests)."""
    spec = os.environ.get(ENV, "").strip()
    if not spec:
        return None
    kind, _, count = spec.partition(":")
    if kind not in KINDS or not count.isdigit() or int(count) < 1:
        raise BadOptions(f"{ENV} takes after_tokens:N or step_after_tokens:N (N >= 1), got {spec!r}.",
                         f"It is a test hook: unset {ENV} to serve normally.")
    log.warning("%s=%s: replies reaching %s tokens fail on purpose (a test hook; unset it to serve normally).",
                ENV, spec, count)
    return Fault(kind, int(count))
