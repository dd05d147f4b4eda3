"""Bearer tokens: which agent may write, and for which nodes.

A token reads ``wlt_<id>_<secret>``. The id finds the row; the secret is checked against the
stored SHA-256 of it with a constant-time comparison. Only the hash is stored, so a copy of the
database gives no one a token. The secret is 256 random bits, which is why a fast hash is enough
here (a password hash exists to slow down guessing of low-entropy secrets).

The collector keeps the active tokens in memory and reloads them every ``refresh_s`` seconds,
and at once (at most once a second) when a token it does not know is presented, so a new token
works immediately.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from wattledger.collector import schema as s
from wattledger.errors import WattledgerError

logger = logging.getLogger(__name__)

TOKEN_PATTERN = re.compile(r"^wlt_(\d{1,18})_([A-Za-z0-9_-]{20,128})$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
LAST_USED_EVERY_NS = 60 * 1_000_000_000


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the token's id and the nodes it may write for (None: any)."""

    token_id: int | None
    allowed_nodes: frozenset[str] | None


class Unauthorized(Exception):
    """The request carries no valid token; the message is safe to send back."""


class TokenError(WattledgerError):
    """A token command cannot be carried out."""


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    nodes: tuple[str, ...] | None
    created_ns: int
    revoked_ns: int | None
    last_used_ns: int | None


def hash_secret(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def create_token(engine: Engine, name: str, nodes: Iterable[str] | None = None) -> str:
    """Store a new token's hash under ``name``; return the token, which is shown only once."""
    if not NAME_PATTERN.match(name):
        raise TokenError(
            f"token name {name!r} is not valid; use letters, digits and . _ @ - (at most 128)"
        )
    node_list = sorted({n.strip() for n in nodes or () if n.strip()}) or None
    secret = secrets.token_urlsafe(32)
    row = {
        "name": name,
        "token_hash": hash_secret(secret),
        "nodes": json.dumps(node_list) if node_list else None,
        "created_ns": time.time_ns(),
    }
    try:
        with engine.begin() as conn:
            token_id = conn.execute(insert(s.api_tokens).values(row)).inserted_primary_key[0]
    except IntegrityError:
        raise TokenError(_name_taken(engine, name)) from None
    return f"wlt_{token_id}_{secret}"


def _name_taken(engine: Engine, name: str) -> str:
    """Why ``name`` cannot be had: an active token holds it, or a revoked one did.

    A revoked token stays listed under its name (``wattledger token list``), so the name is not
    given to another.
    """
    with engine.connect() as conn:
        revoked = conn.execute(
            select(s.api_tokens.c.revoked_ns).where(s.api_tokens.c.name == name)
        ).scalar()
    if revoked is not None:
        return f"a revoked token was named {name!r}; names are not reused, choose another name"
    return f"a token named {name!r} exists already; revoke it or choose another name"


def revoke_token(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        done = conn.execute(
            update(s.api_tokens)
            .where(s.api_tokens.c.name == name, s.api_tokens.c.revoked_ns.is_(None))
            .values(revoked_ns=time.time_ns())
        )
    if done.rowcount == 0:
        raise TokenError(f"no active token named {name!r}; see wattledger token list")


def list_tokens(engine: Engine) -> list[TokenInfo]:
    t = s.api_tokens.c
    query = select(t.id, t.name, t.nodes, t.created_ns, t.revoked_ns, t.last_used_ns).order_by(t.id)
    with engine.connect() as conn:
        return [
            TokenInfo(
                row.id,
                row.name,
                _nodes(row.nodes),
                row.created_ns,
                row.revoked_ns,
                row.last_used_ns,
            )
            for row in conn.execute(query)
        ]


@dataclass(frozen=True)
class _Active:
    token_hash: str
    caller: Caller


class TokenAuthenticator:
    """Turns an ``Authorization`` header into a :class:`Caller`, or raises :class:`Unauthorized`."""

    def __init__(
        self,
        engine: Engine,
        *,
        refresh_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._active: dict[int, _Active] = {}
        self._loaded_at = -float("inf")
        self._last_used: dict[int, int] = {}

    def __call__(self, header: str | None) -> Caller:
        if not header:
            raise Unauthorized("a bearer token is required: Authorization: Bearer wlt_...")
        scheme, _, token = header.strip().partition(" ")
        match = TOKEN_PATTERN.match(token.strip()) if scheme.lower() == "bearer" else None
        if match is None:
            raise Unauthorized("the Authorization header is not 'Bearer wlt_<id>_<secret>'")

        token_id, secret = int(match.group(1)), match.group(2)
        active = self._lookup(token_id)
        presented = hash_secret(secret)
        # Compare even when the id is unknown, so the answer takes as long either way.
        expected = active.token_hash if active else "sha256:" + "0" * 64
        if not hmac.compare_digest(presented.encode(), expected.encode()) or active is None:
            raise Unauthorized("the token is unknown or revoked")
        self._note_use(token_id)
        return active.caller

    def _lookup(self, token_id: int) -> _Active | None:
        now = self._clock()
        with self._lock:
            stale = now - self._loaded_at >= self.refresh_s
            unknown_and_may_reload = token_id not in self._active and now - self._loaded_at >= 1.0
            if stale or unknown_and_may_reload:
                self._active = self._load()
                self._loaded_at = now
            return self._active.get(token_id)

    def _load(self) -> dict[int, _Active]:
        t = s.api_tokens.c
        query = select(t.id, t.token_hash, t.nodes).where(t.revoked_ns.is_(None))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        active = {}
        for token_id, token_hash, nodes in rows:
            allowed = _nodes(nodes)
            caller = Caller(token_id, frozenset(allowed) if allowed is not None else None)
            active[token_id] = _Active(token_hash, caller)
        return active

    def _note_use(self, token_id: int) -> None:
        """Record when a token was last used, at most once a minute per token."""
        now_ns = time.time_ns()
        with self._lock:
            if now_ns - self._last_used.get(token_id, 0) < LAST_USED_EVERY_NS:
                return
            self._last_used[token_id] = now_ns
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(s.api_tokens)
                    .where(s.api_tokens.c.id == token_id)
                    .values(last_used_ns=now_ns)
                )
        except Exception as exc:  # bookkeeping only: never refuse a batch for it
            logger.debug("could not record the use of token %d: %s", token_id, exc)


def _nodes(raw: str | None) -> tuple[str, ...] | None:
    if not raw:
        return None
    return tuple(json.loads(raw))
