"""The shape of an LM Studio API token, for the simulator's 401s and its ``--token`` check.

LM Studio makes tokens ``sk-lm-<8 letters or digits>:<20 letters or digits>`` (the official
SDKs parse them with this very pattern, splitting the client identifier from its passkey).
"""

from __future__ import annotations

import re

__all__ = ["TOKEN_SHAPE", "malformed", "token_problem"]

TOKEN_SHAPE = re.compile(r"sk-lm-[A-Za-z0-9]{8}:[A-Za-z0-9]{20}")


def well_shaped(token: str) -> bool:
    return TOKEN_SHAPE.fullmatch(token) is not None


def malformed(given: str, configured: str) -> bool:
    """Whether a wrong token gets LM Studio's "Malformed ... token" 401 rather than its
    "Invalid ... token" one: it is not shaped like a token. A simulator configured in process
    with a token of another shape (older tests) keeps the looser rule: only the ``sk-lm-``
    prefix is checked."""
    if well_shaped(configured):
        return not well_shaped(given)
    return not given.startswith("sk-lm-")


def token_problem(token: str) -> str | None:
    """One sentence saying why ``token`` cannot be a server's API token, or None."""
    if well_shaped(token):
        return None
    return (
        "--token must look like an LM Studio API token, sk-lm- then 8 letters or digits, "
        "a colon and 20 letters or digits (sk-lm-Ab12Cd34:Ef56Gh78Ij90Kl12Mn34), as the "
        "official SDKs accept no other."
    )
