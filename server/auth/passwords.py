"""Password hashing for App Launch users: scrypt from the standard library.

scrypt is memory-hard (an attacker with the database cannot cheaply try passwords on GPUs) and
needs no extra dependency. Parameters: N=2^17, r=8, p=1, OWASP's minimum for scrypt ("use scrypt
with a minimum CPU/memory cost parameter of (2^17), a minimum block size of 8 (1024 bytes), and a
parallelization parameter of 1": Password Storage Cheat Sheet,
https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html, read 2026-12-03).
That is 128 MiB and 0.77 s of one core per hash (measured on this 2-core machine while other jobs
ran); sign-ins are throttled (`server.auth.store.AuthStore.login_locked`), so the cost bounds an
attacker's guesses, not the server's capacity.

The parameters travel in the stored string, so hashes made with older ones (N=2^14 before) still
verify; `needs_rehash` tells the sign-in to store a new hash with the current parameters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache

_N, _R, _P, _LEN = 2**17, 8, 1, 32


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # OpenSSL needs 128·N·r bytes (plus a little); the default cap of 32 MiB is below OWASP's N.
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=256 * n * r)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(_scrypt(password, salt, _N, _R, _P, _LEN))}"


def needs_rehash(stored: str) -> bool:
    """Whether a hash was made with weaker parameters than the current ones."""
    return not stored.startswith(f"scrypt${_N}${_R}${_P}$")


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Checked when the user does not exist, so a login takes as long for unknown users as for
    known ones (no username enumeration by timing)."""
    return hash_password(secrets.token_urlsafe(16))


def verify_password(password: str, stored: str | None) -> bool:
    """Constant-time check; `stored=None` (unknown user) still costs one scrypt run."""
    if stored is None:
        verify_password(password, _dummy_hash())
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)
