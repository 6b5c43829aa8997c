"""Redis-backed helpers with in-process fallbacks: the shared link, the L1/L2 cache, rate limits."""

from .cache import Cache, TTLCache
from .link import RedisDown, RedisLink
from .ratelimit import Decision, RateLimiter

__all__ = ["Cache", "Decision", "RateLimiter", "RedisDown", "RedisLink", "TTLCache"]
