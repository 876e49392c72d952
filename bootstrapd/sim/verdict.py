"""What a phone does with an HTTP status (mpp-bootstrap.md section 6), without I/O.

301/302 are followed at once; 401/407 are retried with credentials at most twice, then class C; 404 is
class B (file not found: retry after the error-retry delay); any other 3xx/4xx/5xx is class C.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

MAX_AUTH_RETRIES = 2
MAX_REDIRECTS = 5  # not documented; a bound so that a redirect loop ends


class Action(enum.Enum):
    DONE = "done"            # 2xx: the profile is in the body
    FOLLOW = "follow"        # 301/302: GET the Location
    AUTHENTICATE = "auth"    # 401/407: send the request again with credentials
    CLASS_B = "class B"      # 404: the file is missing; a phone retries after its error delay
    CLASS_C = "class C"      # everything else: a hard failure until the next scheduled resync


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str


def judge(status: int, *, auth_retries: int, redirects: int, has_credentials: bool,
          location: str | None = None) -> Verdict:
    """The phone's next step after `status`, given how often it already retried and followed."""
    if 200 <= status < 300:
        return Verdict(Action.DONE, f"{status}")
    if status in (301, 302):
        if not location:
            return Verdict(Action.CLASS_C, f"{status} without a Location")
        if redirects >= MAX_REDIRECTS:
            return Verdict(Action.CLASS_C, f"{status}: more than {MAX_REDIRECTS} redirects")
        return Verdict(Action.FOLLOW, f"{status} -> {location}")
    if status in (401, 407):
        if not has_credentials:
            return Verdict(Action.CLASS_C, f"{status} and the phone has no credentials")
        if auth_retries >= MAX_AUTH_RETRIES:
            return Verdict(Action.CLASS_C, f"{status} after {MAX_AUTH_RETRIES} retries with credentials")
        return Verdict(Action.AUTHENTICATE, f"{status}: retry with credentials")
    if status == 404:
        return Verdict(Action.CLASS_B, "404 file not found")
    return Verdict(Action.CLASS_C, f"{status}")
