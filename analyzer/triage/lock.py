"""A Redis lock so two workers never run tier 2 for one incident at the same time.

SET key token NX PX ttl takes it; a Lua compare-and-delete releases it only when the
token is still ours (a lock that expired and was taken by another worker is left alone).
The expiry is longer than tier 2's longest run (`LLMConfig.lock_ttl_seconds`: two
provider calls, each bounded by the timeout), so it only expires when its holder died.

A worker that finds the lock held skips tier 2 and records nothing: the holder is making
the same model call for the same incident, and its answer lands in the fingerprint cache.
Waiting would only spend the worker thread; the one case it loses is an escalation that
arrives while the lower severity is being analysed, and the next occurrence of the
incident at that severity, or the next escalation, analyses it again.
"""

from __future__ import annotations

import dataclasses
import secrets

import redis

RELEASE = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""


def lock_key(namespace: str, tenant: str, incident_id: int) -> str:
    return f"{namespace}:llm:lock:{tenant}:{incident_id}"


@dataclasses.dataclass
class IncidentLock:
    """Per-incident analysis locks in the marks Redis (blocking calls; run them in a thread)."""

    client: redis.Redis
    namespace: str
    ttl_seconds: float

    def acquire(self, tenant: str, incident_id: int) -> str | None:
        """Take the incident's lock: its token, or None when another worker holds it."""
        token = secrets.token_hex(16)
        taken = self.client.set(
            lock_key(self.namespace, tenant, incident_id),
            token,
            nx=True,
            px=max(int(self.ttl_seconds * 1000), 1),
        )
        return token if taken else None

    def release(self, tenant: str, incident_id: int, token: str) -> bool:
        """Give the lock back if it is still ours; True when it was deleted."""
        deleted = self.client.eval(RELEASE, 1, lock_key(self.namespace, tenant, incident_id), token)
        return bool(deleted)
