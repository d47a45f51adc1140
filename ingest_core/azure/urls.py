"""Blob and ADLS Gen2 URLs: parse every accepted form, build child URLs in the same form.

Accepted::

    abfss://container@account.dfs.core.windows.net/path   (also abfs://, az://)
    abfs://container/path                                 (account from the configuration)
    https://account.blob.core.windows.net/container/path  (also .dfs.)
    http://127.0.0.1:10000/devstoreaccount1/container/path (Azurite, path style)

Blob names travel percent-encoded where a URL would misread them: `%`, `#`,
`?`, whitespace and control characters. Everything else stays as written,
unicode included, so URLs in the ledger read like the blob names.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ingest_core.errors import ConfigurationError

DFS_SCHEMES = ("abfs", "abfss", "az")
HTTP_SCHEMES = ("https", "http")

_UNSAFE = re.compile(r"[%#?\s\x00-\x1f\x7f]")


@dataclass(frozen=True)
class BlobLocation:
    """A container and a blob name (or prefix) inside it."""

    container: str
    name: str
    """The blob name or prefix, decoded, without a leading slash ('' for the whole container)."""
    account: str | None
    """The account the URL names; None for the short form `abfs://container/path`."""
    base: str
    """The URL up to and including `container/`: children are `base + quote_name(name)`."""
    path_style: bool = False
    """True for `http(s)://host/account/container/...` (Azurite): the account is in the path."""

    def url_of(self, name: str) -> str:
        """The URL of blob `name` in this container, in the same form as this location."""
        return self.base + quote_name(name)

    def child(self, name: str) -> BlobLocation:
        """The location of blob `name` in this container (no parsing)."""
        return dataclasses.replace(self, name=name)

    @property
    def url(self) -> str:
        """This location's URL."""
        return self.url_of(self.name)


def quote_name(name: str) -> str:
    """Percent-encode the characters of a blob name that a URL would misread."""
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), name)


def _bad(url: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"{url!r} is not a Blob/ADLS URL ({why}); use abfss://container@account.dfs.core."
        "windows.net/path, abfs://container/path or https://account.blob.core.windows.net/"
        "container/path"
    )


def _path_style(host: str) -> bool:
    """Azurite and other emulators put the account in the path, not the host."""
    return ".blob." not in host and ".dfs." not in host


def parse_blob_url(url: str) -> BlobLocation:
    """Split a Blob/ADLS URL into account, container and decoded blob name."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if parts.query or parts.fragment:
        raise _bad(url, "write # as %23 and ? as %3F inside blob names")
    if scheme in DFS_SCHEMES:
        netloc = parts.netloc
        container, at, host = netloc.partition("@")
        account = host.split(".")[0] if at else None
        if at and not account:
            raise _bad(url, "no account after @")
        base = f"{parts.scheme}://{netloc}/"
        name = parts.path.lstrip("/")
    elif scheme in HTTP_SCHEMES:
        host = parts.hostname or ""
        if not host:
            raise _bad(url, "no host")
        segments = parts.path.lstrip("/").split("/", 2 if _path_style(host) else 1)
        if _path_style(host):
            account = segments[0] or None
            segments = segments[1:]
            prefix = f"{parts.scheme}://{parts.netloc}/{account}/"
        else:
            account = host.split(".")[0]
            prefix = f"{parts.scheme}://{parts.netloc}/"
        container = segments[0] if segments else ""
        name = segments[1] if len(segments) > 1 else ""
        base = f"{prefix}{container}/"
    else:
        raise _bad(url, f"scheme {parts.scheme or 'none'!r}")
    if not container:
        raise _bad(url, "no container")
    return BlobLocation(
        container=container,
        name=unquote(name),
        account=account,
        base=base,
        path_style=scheme in HTTP_SCHEMES and _path_style(host),
    )


def is_blob_url(url: str) -> bool:
    """Whether `url` is in a form `parse_blob_url` reads."""
    return urlsplit(url).scheme.lower() in (*DFS_SCHEMES, *HTTP_SCHEMES)
