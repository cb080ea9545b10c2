"""A request one installed gateway cannot carry goes to another that can: SaaS-LiteLLM
drops `response_format` for non-OpenAI upstreams, so the router skips it for MythicDot
(two plugins side by side, both served over loopback by the fake gateways)."""

from __future__ import annotations

import turnout
from turnout.fake import FakeGateways

HI = [{"role": "user", "content": "hello there world"}]


def test_the_router_skips_to_a_deployment_that_carries_it() -> None:
    with FakeGateways() as fake:
        deps = [
            turnout.Deployment(
                "lite",
                "litellm",
                "ChatAgent",
                api_key="sk-lite-test",
                base_url=fake.base_url("litellm"),
                options={"team_id": "team-1"},
            ),
            turnout.Deployment(
                "mythic",
                "mythicdot",
                "mythic-4",
                api_key="sk-mythic-test",
                base_url=fake.base_url("mythicdot"),
            ),
        ]
        with turnout.Router(deps) as router:
            response = router.chat(HI, seed=7, response_format={"type": "json_object"})
        assert response.deployment == "mythic"
        assert fake.requests("litellm") == 0
