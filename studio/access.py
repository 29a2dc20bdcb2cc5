"""Who can reach the dashboard and with which sign-in, read from its configuration alone: the
rules that the dashboard's sign-in (``app.auth``) and ``dm up``'s warnings share.

The configuration is the dashboard's environment (``DM_PASSWORD``, ``DM_ALLOWED_USERS``,
``DM_TRUSTED_PROXIES``) and the ``[auth]`` section of its ``.streamlit/secrets.toml``; what each
means for a session is told in ``app.auth``. Nothing here needs Streamlit: ``dm up`` checks the
configuration before it starts the dashboard, as a separate process it never imports, and a
malformed allowlist or proxy list stops it there with the same message the dashboard would show.

``login_required`` is the one rule for "is a login configured": an empty ``[auth]`` table is no
login.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PASSWORD_ENV = "DM_PASSWORD"
TRUSTED_PROXIES_ENV = "DM_TRUSTED_PROXIES"
ALLOWED_USERS_ENV = "DM_ALLOWED_USERS"
ALLOWED_EMAILS_KEY = "allowed_emails"
ALLOWED_DOMAINS_KEY = "allowed_domains"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = ["ALLOWED_DOMAINS_KEY", "ALLOWED_EMAILS_KEY", "ALLOWED_USERS_ENV", "PASSWORD_ENV",
           "TRUSTED_PROXIES_ENV", "Allowlist", "AuthConfigError", "Network", "allowlist_in",
           "auth_section_for", "exposure_warnings", "is_loopback", "login_required",
           "oidc_providers_in", "secrets_files", "trusted_proxies_in"]


class AuthConfigError(ValueError):
    """A malformed allowlist (``[auth]`` allowed_emails/allowed_domains, DM_ALLOWED_USERS) or
    list of trusted proxies (DM_TRUSTED_PROXIES)."""


def oidc_providers_in(section: Any) -> list[str] | None:
    """The OIDC providers an ``[auth]`` section configures (``"default"`` for one unnamed
    provider), or None when there is no section or it is empty (no login). A section that
    names no provider still asks for one: its sign-in explains the misconfiguration."""
    if not section:
        return None
    if not isinstance(section, Mapping):
        return ["default"]
    named = [name for name, value in section.items()
             if isinstance(value, Mapping) and value.get("client_id")]
    return named or ["default"]


def login_required(section: Any, environ: Mapping[str, str]) -> bool:
    """Whether the dashboard asks for a login, given its ``[auth]`` section and environment:
    a shared password (``DM_PASSWORD``) or an OIDC provider. The one rule for the dashboard
    (``require_login``) and for ``dm up``'s warning."""
    return bool(environ.get(PASSWORD_ENV)) or oidc_providers_in(section) is not None


@dataclass(frozen=True)
class Allowlist:
    """The accounts that may sign in with OIDC: exact emails and whole domains (lower case)."""

    emails: frozenset[str]
    domains: frozenset[str]

    def admits(self, email: str | None) -> bool:
        """True when ``email`` is listed or its domain is (``a@Example.org`` ~ ``example.org``)."""
        if not email or email.count("@") != 1:
            return False
        email = email.strip().lower()
        return email in self.emails or email.rsplit("@", 1)[1] in self.domains


def _entries(value: Any, where: str) -> list[str]:
    """A list of strings, or one comma-separated string, as stripped non-empty entries."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise AuthConfigError(f"{where} must be a list of strings (or one comma-separated "
                              f"string); got {type(value).__name__}")
    return [v.strip().lower() for v in value if v.strip()]


def _email(entry: str, where: str) -> str:
    local, _, domain = entry.partition("@")
    if not local or not domain or "@" in domain:
        raise AuthConfigError(f"{where}: {entry!r} is not an email address (name@domain)")
    return entry


def _domain(entry: str, where: str) -> str:
    domain = entry.removeprefix("@")
    if not domain or "@" in domain:
        raise AuthConfigError(f"{where}: {entry!r} is not a domain (e.g. example.org)")
    return domain


def allowlist_in(section: Any, environ: Mapping[str, str]) -> Allowlist | None:
    """The OIDC allowlist from ``[auth]`` ``allowed_emails``/``allowed_domains`` and
    ``$DM_ALLOWED_USERS`` (``ada@example.org,@example.com``), combined; None when none of
    them is set. A key that is present but empty admits nobody; an empty variable is unset.
    Malformed entries raise AuthConfigError naming the key or variable."""
    emails: set[str] = set()
    domains: set[str] = set()
    found = False
    if isinstance(section, Mapping):
        if ALLOWED_EMAILS_KEY in section:
            where = f"[auth] {ALLOWED_EMAILS_KEY}"
            emails |= {_email(e, where) for e in _entries(section[ALLOWED_EMAILS_KEY], where)}
            found = True
        if ALLOWED_DOMAINS_KEY in section:
            where = f"[auth] {ALLOWED_DOMAINS_KEY}"
            domains |= {_domain(d, where) for d in _entries(section[ALLOWED_DOMAINS_KEY], where)}
            found = True
    if environ.get(ALLOWED_USERS_ENV, "").strip():
        for entry in _entries(environ[ALLOWED_USERS_ENV], ALLOWED_USERS_ENV):
            if entry.startswith("@"):
                domains.add(_domain(entry, ALLOWED_USERS_ENV))
            else:
                emails.add(_email(entry, f"{ALLOWED_USERS_ENV} (emails, or @domain entries)"))
        found = True
    return Allowlist(frozenset(emails), frozenset(domains)) if found else None


# ---------------------------------------------------------------- who can reach the dashboard

def secrets_files(app_file: Path) -> list[Path]:
    """The secrets.toml files Streamlit reads for the dashboard ``app_file``, in its order:
    global, project (the current directory) and beside the app."""
    return [Path.home() / ".streamlit" / "secrets.toml",
            Path.cwd() / ".streamlit" / "secrets.toml",
            app_file.parent / ".streamlit" / "secrets.toml"]


def auth_section_for(app_file: Path) -> Any:
    """The ``[auth]`` section the dashboard will see, or None, read before it starts: a later
    file's ``[auth]`` replaces an earlier one's, as in Streamlit."""
    section = None
    for path in secrets_files(app_file):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            continue
        if "auth" in data:
            section = data["auth"]
    return section


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warnings(host: str, port: int, section: Any, environ: Mapping[str, str]) -> list[str]:
    """What to warn about before serving the dashboard on ``host:port`` with this ``[auth]``
    section and environment: no login on an address other machines reach, and an OIDC login
    that lets in any account of the provider. A malformed allowlist or ``DM_TRUSTED_PROXIES``
    raises AuthConfigError (the dashboard would let nobody in)."""
    trusted_proxies_in(environ)
    warnings = []
    if not is_loopback(host) and not login_required(section, environ):
        empty = " (the [auth] section is empty, which is no login)" if section is not None else ""
        warnings.append(f"the dashboard listens on {host}:{port} without authentication{empty}; "
                        "anyone who reaches this port can launch and delete runs. Set "
                        f"{PASSWORD_ENV}, or configure [auth] (OIDC) in .streamlit/secrets.toml.")
    if oidc_providers_in(section) and allowlist_in(section, environ) is None:
        warnings.append("OIDC sign-in has no allowlist: any account the provider "
                        "authenticates can sign in. Set allowed_emails and/or "
                        "allowed_domains in [auth] of .streamlit/secrets.toml, or "
                        f"{ALLOWED_USERS_ENV} (e.g. ada@example.org,@example.org).")
    return warnings


def trusted_proxies_in(environ: Mapping[str, str]) -> tuple[Network, ...]:
    """The reverse proxies whose ``X-Forwarded-For`` the sign-in believes:
    ``$DM_TRUSTED_PROXIES``, comma-separated addresses or networks; none when unset. An entry
    that is neither raises AuthConfigError naming the variable.

    >>> [str(n) for n in trusted_proxies_in({"DM_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"})]
    ['127.0.0.1/32', '10.0.0.0/8']
    >>> trusted_proxies_in({"DM_TRUSTED_PROXIES": "my-proxy"})
    Traceback (most recent call last):
    studio.access.AuthConfigError: DM_TRUSTED_PROXIES: 'my-proxy' is not an IP address or network; expected e.g. 127.0.0.1 or 10.0.0.0/8 (the reverse proxies in front of the dashboard)
    """
    networks = []
    for entry in environ.get(TRUSTED_PROXIES_ENV, "").split(","):
        if not entry.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise AuthConfigError(f"{TRUSTED_PROXIES_ENV}: {entry.strip()!r} is not an IP "
                                  "address or network; expected e.g. 127.0.0.1 or 10.0.0.0/8 "
                                  "(the reverse proxies in front of the dashboard)") from None
    return tuple(networks)
