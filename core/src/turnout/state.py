"""Where a router keeps its state: in this process (the default) or in Redis.

```python
from turnout.state import RedisStore

router = turnout.Router(deployments, store=RedisStore("redis://127.0.0.1:6379/0"))
```

Every router sharing one Redis (and one `prefix`) sees the others' breaker
trips, cooldowns, rate-limit exhaustion, latency and retry budget. The
`redis` package (`pip install 'turnout[redis]'`) is imported only when a
`RedisStore` is created.
"""

from __future__ import annotations

from ._redis_store import DEFAULT_URL, RedisStore
from ._state import MemoryStore, RetryBudget, StateStore

__all__ = ["DEFAULT_URL", "MemoryStore", "RedisStore", "RetryBudget", "StateStore"]
