"""Acme's gateway, emulated: OpenAI's answers and streams, Acme's errors."""

from __future__ import annotations

from collections.abc import Sequence

from turnout.emulation import DemoDeployment, EmulatedResponse, OpenAIEmulator

from .normalizer import REASONS

# --8<-- [start:emulator]
# A kind ("rate_limited") renders as the reason Acme sends for it.
KIND_REASONS = {rule.kind.value: reason for reason, rule in REASONS.items()}


class AcmeEmulator(OpenAIEmulator):
    provider = "acme"

    def render_error(
        self, error: str, *, retry_after: float | None = None, request_id: str | None = None
    ) -> EmulatedResponse:
        """The response for one of Acme's reasons, or for a kind."""
        reason = KIND_REASONS.get(error, error)
        if reason not in REASONS:
            raise ValueError(f"Acme sends no {error!r}; it sends {', '.join(REASONS)}")
        request_id = request_id or self.next_id()
        body: dict[str, object] = {"status": "error", "reason": reason, "request_id": request_id}
        if retry_after is not None:
            body["retry_in_ms"] = round(retry_after * 1000)
        return EmulatedResponse.json(REASONS[reason].status or 500, body, [("x-acme-request", request_id)])

    def error_names(self) -> Sequence[str]:
        return list(REASONS)

    def demo_deployment(self) -> DemoDeployment:
        return DemoDeployment("acme-large", "acme_demo_0123456789")


# --8<-- [end:emulator]
