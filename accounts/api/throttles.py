"""Rate limits of the anonymous auth endpoints.

Counters live in the default cache (Redis in deployments), so every server
process shares them. Login is limited per account name, whatever the
address (`AGENTRY_LOGIN_RATE`: a password guesser spread over many addresses
still stops), and, more generously, per address alone
(`AGENTRY_LOGIN_IP_RATE`: a spray over many names stops too).
"""

from __future__ import annotations

import hashlib

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle


class LoginRateThrottle(SimpleRateThrottle):
    scope = "login"

    def get_cache_key(self, request: Request, view) -> str:
        data = request.data
        username = data.get("username", "") if hasattr(data, "get") else ""
        # One counter per account, however the name is spelled or spaced; the
        # key is a hash, so no account name sits in the cache.
        account = hashlib.sha256(str(username).strip().lower().encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": account[:32]}


class LoginAddressRateThrottle(SimpleRateThrottle):
    scope = "login_ip"

    def get_cache_key(self, request: Request, view) -> str:
        return self.cache_format % {
            "scope": self.scope,
            "ident": self.get_ident(request),
        }
