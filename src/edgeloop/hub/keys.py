"""The hub's signing key: read from a file, or generated on the first start.

Every version the hub registers is signed with this Ed25519 key
(:mod:`edgeloop.security.signing`); nodes trust its public half, which the hub serves at
``GET /v1/keys``. The key lives in the hub's data directory as
:data:`KEY_FILE` (PKCS#8 PEM, mode 0600) unless a path is given. It must survive
restarts: nodes reject models signed by a key they do not trust.

Two hub processes starting at once on an empty data directory agree on one key: the
file is written under a temporary name and published with a hard link, which fails if
the other process published first (this process then reads that one).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from edgeloop.security import KeyFileError, PrivateKey, load_private_key, save_private_key

KEY_FILE = "hub-signing-key.pem"
"""File name of the signing key in the hub's data directory."""


def hub_key(data_dir: str | Path | None = None, key_path: str | Path | None = None) -> PrivateKey:
    """The hub's signing key.

    Args:
        data_dir: the hub's data directory; the key is ``data_dir/KEY_FILE``, generated
            there if it does not exist (the directory too).
        key_path: an existing key file to use instead (never generated).

    Raises:
        KeyFileError: neither argument given, ``key_path`` missing or unreadable, or the
            data directory cannot be written (the path is named).
    """
    if key_path is not None:
        return load_private_key(key_path)
    if data_dir is None:
        raise KeyFileError("hub key: give a data directory or a key file")
    path = Path(data_dir) / KEY_FILE
    if path.exists():
        return load_private_key(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(f"{path.parent}: cannot create the hub data directory ({exc})") from exc
    key = PrivateKey.generate()
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
    save_private_key(tmp, key)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return load_private_key(path)  # another hub process published its key first
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot write the hub signing key ({exc})") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return key


__all__ = ["KEY_FILE", "hub_key"]
