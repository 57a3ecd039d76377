"""Rate limits of the anonymous auth endpoints.

Counters live in the default cache (Redis in deployments), so every server
process shares them. Login is limited per account name and client address (a
brute-force attempt on one account stops quickly without locking out a whole
office behind one NAT) and, more generously, per address alone (a spray over
many names stops too).
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
        account = hashlib.sha256(str(username).strip().lower().encode()).hexdigest()
        ident = f"{self.get_ident(request)}:{account[:32]}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class LoginAddressRateThrottle(SimpleRateThrottle):
    scope = "login_ip"

    def get_cache_key(self, request: Request, view) -> str:
        return self.cache_format % {
            "scope": self.scope,
            "ident": self.get_ident(request),
        }
