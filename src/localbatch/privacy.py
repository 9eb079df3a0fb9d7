"""The data dir is its user's alone: job commands, logs and the admin token are in it.

``serve`` sets umask 077 before it creates anything, and tightens what an earlier run (or an older
localbatch) left with wider modes.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ADMIN_TOKEN_FILE = "admin-token"
#: The SQLite database and the files SQLite keeps beside it.
STORE_FILES = (
    "localbatch.sqlite3",
    "localbatch.sqlite3-wal",
    "localbatch.sqlite3-shm",
    "localbatch.sqlite3-journal",
)


def make_private(data_dir: Path) -> None:
    """umask 077 for this process (and the jobs it starts), then 0700/0600 on what exists already."""
    os.umask(0o077)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    work = data_dir / "work"
    if work.is_dir():
        work.chmod(0o700)
    for name in STORE_FILES:
        path = data_dir / name
        if path.exists():
            path.chmod(0o600)


def write_admin_token(data_dir: Path) -> str:
    """A fresh bearer token for ``/_localbatch/*``, in a 0600 file of the data dir (written whole)."""
    token = secrets.token_urlsafe(32)
    tmp = data_dir / f".{ADMIN_TOKEN_FILE}.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    tmp.replace(data_dir / ADMIN_TOKEN_FILE)
    return token


def read_credentials(text: str) -> tuple[str, str]:
    """``KEY:SECRET`` (a file's first line, or the flag's value) as (key, secret)."""
    key, sep, secret = text.strip().splitlines()[0].partition(":") if text.strip() else ("", "", "")
    if not sep or not key or not secret:
        raise ValueError("credentials must read KEY:SECRET")
    return key, secret
