"""Credentials taken out of command lines and log text before they are written anywhere.

The guard copies other processes' command lines into guard.log, status.json and what
`guardctl status` prints (an `mlflow gc` aimed at the store, a stray server). Those may carry
`http://user:password@host`, `?token=...` or `MLFLOW_TRACKING_PASSWORD=...`; the state folder
and the journal are not the place for them. Pure functions: a command line (a list of
arguments) or a line of text in, the same with each secret value replaced by `***` out.
Over-redacting a value whose name only looks secret is cheap; leaking one is not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

# A name is secret when one of its parts (split at _ - .) ends with one of these words, or
# is one of the short ones exactly (e.g. AWS_SECRET_ACCESS_KEY, PGPASSWORD, X-Amz-Signature).
_ENDINGS = ("password", "passwd", "passphrase", "secret", "token", "key", "credential",
            "credentials", "auth", "signature", "apikey", "cookie")
_EXACT = ("pwd", "pass", "sig", "jwt", "bearer")

# scheme://user:password@  (the user stays: it says who, not how)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:@/\s]*):(?P<secret>[^/\s]+)@")
# name=value, after the start, a space, a quote, ?, & or ; (env vars, --flag=x, query strings)
_ASSIGNMENT = re.compile(r"(?P<head>(?:^|(?<=[\s?&;,'\"(]))(?P<name>-{0,2}[A-Za-z0-9_.\-]+)=)"
                         r"(?P<value>[^\s&#;,'\"]+)")
# --flag value (in text: the value is the next word)
_FLAG_VALUE = re.compile(r"(?P<head>(?:^|(?<=\s))(?P<name>--?[A-Za-z0-9_.\-]+)\s+)"
                         r"(?P<value>[^\s\-][^\s]*)")
# Authorization: Bearer <token> / Basic <base64>
_SCHEME_TOKEN = re.compile(
    r"(?P<head>\b(?:Bearer|Basic|Token)\s+)(?P<value>[A-Za-z0-9._~+/=\-]{8,})", re.IGNORECASE)


def secret_name(name: str) -> bool:
    """Whether a variable, flag or query parameter of this name holds a secret (pure)."""
    parts = [p for p in re.split(r"[_.\-]+", name.lower()) if p]
    return any(p in _EXACT or p.endswith(_ENDINGS) for p in parts)


def _assignment(match: re.Match[str]) -> str:
    if secret_name(match["name"]):
        return match["head"] + MASK
    return match[0]


def _flag_value(match: re.Match[str]) -> str:
    if secret_name(match["name"]) and "=" not in match["name"]:
        return match["head"] + MASK
    return match[0]


def redact(text: str) -> str:
    """`text` with credentials in URLs, secret `name=value` pairs, secret `--flag value`
    pairs and Authorization-style tokens masked (pure)."""
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _ASSIGNMENT.sub(_assignment, text)
    text = _FLAG_VALUE.sub(_flag_value, text)
    return _SCHEME_TOKEN.sub(lambda m: m["head"] + MASK, text)


def redact_argv(args: Iterable[str]) -> tuple[str, ...]:
    """A command line with its secrets masked, argument by argument: a secret flag without
    `=` (`--password x`) masks the argument after it (pure)."""
    out: list[str] = []
    mask_next = False
    for arg in args:
        if mask_next and not arg.startswith("-"):
            out.append(MASK)
            mask_next = False
            continue
        mask_next = arg.startswith("-") and "=" not in arg and secret_name(arg)
        out.append(redact(arg))
    return tuple(out)
