"""Who may use the dashboard: a shared password, an OIDC login, or (on 127.0.0.1) anyone.

- **Shared password**: set ``DM_PASSWORD`` in the dashboard's environment. A session is let
  in once it typed the password (compared with ``hmac.compare_digest``, so the time taken
  does not leak how much of it was right). Changing ``DM_PASSWORD`` signs every session out.
  Failed sign-ins are counted per source across all sessions of the server
  (``LoginThrottle``): after ``FREE_FAILURES`` in a row, that source must wait, twice as
  long after each further failure (up to ``MAX_LOCKOUT_S``), and while it waits no password
  it sends is even checked. Failures delay only the source that made them, so a guesser
  never locks anyone else out (``sign_in_source``): the source is the client's address when
  it is known, else the browser session. Streamlit reports no address for a loopback peer
  (a browser on this machine, or a reverse proxy on it), so those are counted per session.
  Behind a reverse proxy, ``DM_TRUSTED_PROXIES`` (its addresses or networks,
  comma-separated, e.g. ``127.0.0.1``) makes the client's address the one the proxy appended
  to ``X-Forwarded-For``; without it the header is ignored, since any client can send one.
  Every failure is logged (logger ``app.auth``) with the source and the count, never with
  what was typed.
- **OIDC** (Google, Microsoft, Okta, Auth0, ...): an ``[auth]`` section in
  ``.streamlit/secrets.toml``, as Streamlit's ``st.login`` documents it: ``redirect_uri``
  (``http://HOST:PORT/oauth2callback``), ``cookie_secret``, and the provider's
  ``client_id``, ``client_secret`` and ``server_metadata_url`` -- directly in ``[auth]``
  (one provider) or in ``[auth.NAME]`` sections (one "Sign in with NAME" button each).
  Needs Authlib (``pip install 'dm-studio[auth]'``).
- **Who may sign in with OIDC**: ``allowed_emails`` and/or ``allowed_domains`` in ``[auth]``
  (lists, e.g. ``["ada@example.org"]`` and ``["example.org"]``), or ``DM_ALLOWED_USERS``
  (comma-separated emails and ``@domain`` entries; all three are combined). When any is set,
  a signed-in account outside it (or one whose provider says its email is not verified)
  sees a refusal and a "Sign out" button, nothing else. None set: any account the provider
  authenticates gets in (``dm up`` warns).
- Both set: both are asked, OIDC first. Neither: the dashboard is open, which is only safe
  on 127.0.0.1 (``dm up`` warns when it binds anything else).

The rules read from the configuration alone (``login_required``, the allowlist, the trusted
proxies, who can reach which address) are ``studio.access``'s, shared with ``dm up``'s warnings;
this module is what a session sees.

``app/streamlit_app.py`` calls ``require_login()`` before it builds the navigation: until a
session is signed in, the only page that exists is the sign-in page, so no other page can
be reached by its URL either.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import streamlit as st

from app.text import md
from studio.access import (
    ALLOWED_DOMAINS_KEY,
    ALLOWED_EMAILS_KEY,
    ALLOWED_USERS_ENV,
    PASSWORD_ENV,
    AuthConfigError,
    Network,
    allowlist_in,
    oidc_providers_in,
    trusted_proxies_in,
)

SESSION_KEY = "dm_auth.password_ok"  # holds a digest of the password it was granted for
WANTED_KEY = "dm_auth.wanted"  # (page url path, query params) asked for before signing in
SOURCE_KEY = "dm_auth.source"  # this browser session's own throttle key (no known address)
FREE_FAILURES = 5  # wrong passwords in a row from one source before it has to wait
FIRST_LOCKOUT_S = 2.0  # the first wait; each further failure doubles it
MAX_LOCKOUT_S = 900.0
FORGET_AFTER_S = 3600.0  # a source quiet this long starts afresh

logger = logging.getLogger(__name__)

__all__ = ["LoginThrottle", "login_throttle", "oidc_providers", "require_login",
           "requested_before_sign_in", "shared_password", "sign_in_source"]


def shared_password() -> str | None:
    """The shared password (``$DM_PASSWORD``), or None when there is none."""
    return os.environ.get(PASSWORD_ENV) or None


def _secrets_auth_section() -> Any:
    """The ``[auth]`` section of the dashboard's secrets, or None."""
    try:
        return st.secrets.get("auth")
    except (FileNotFoundError, OSError):  # no secrets file at all
        return None


def oidc_providers() -> list[str] | None:
    """The OIDC providers configured in ``[auth]`` of ``.streamlit/secrets.toml``, or None."""
    return oidc_providers_in(_secrets_auth_section())


# ---------------------------------------------------------------- whose failures count together

# Streamlit reports no address for these peers (st.context.ip_address is None).
_LOOPBACK_PEERS = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
             proxies: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def sign_in_source(peer: str | None, forwarded_for: Sequence[str], session: str,
                   proxies: Sequence[Network] = ()) -> str:
    """Whose failed sign-ins a sign-in is counted with: the key of ``LoginThrottle``.

    ``peer`` is the connection's address (None: Streamlit reports none, as for a loopback
    peer), ``forwarded_for`` the request's ``X-Forwarded-For`` headers, ``session`` this
    browser session's own random token and ``proxies`` the trusted reverse proxies
    (``trusted_proxies_in``). The source is the client's address when it is known: the peer,
    unless the peer is a trusted proxy, then the address that proxy forwarded -- read from
    the right, the nearest entry that is not itself a trusted proxy (the entries left of it
    are whatever the client sent). When no address is known (a loopback peer that is not a
    trusted proxy, or a trusted proxy that forwarded nothing usable), it is the browser
    session: counting every such client as one would let one guesser lock out all of them.

    >>> sign_in_source("203.0.113.7", ["198.51.100.9"], "s1")   # an untrusted peer: its own
    '203.0.113.7'
    >>> sign_in_source(None, ["198.51.100.9"], "s1")            # header ignored, no address
    'session s1'
    >>> local = trusted_proxies_in({"DM_TRUSTED_PROXIES": "127.0.0.1"})
    >>> sign_in_source(None, ["192.0.2.1, 198.51.100.9"], "s1", local)  # the proxy's entry
    '198.51.100.9'
    """
    try:
        address = ipaddress.ip_address(peer) if peer else None
    except ValueError:
        address = None
    via_trusted_proxy = (_trusted(address, proxies) if address is not None
                         else any(_trusted(a, proxies) for a in _LOOPBACK_PEERS))
    if not via_trusted_proxy:
        return str(address) if address is not None else f"session {session}"
    entries = [e.strip() for header in forwarded_for for e in header.split(",") if e.strip()]
    for entry in reversed(entries):
        try:
            hop = ipaddress.ip_address(entry)
        except ValueError:  # not written by a proxy we trust: nothing right of it was a client
            break
        if not _trusted(hop, proxies):
            return str(hop)
    return f"session {session}"


def _whose(source: str) -> str:
    """How the sign-in page names a source to the person signing in."""
    return "this browser session" if source.startswith("session ") else "your address"


@dataclass
class _Failures:
    count: int  # failures in a row
    last: float  # clock time of the latest
    locked_until: float


@dataclass
class LoginThrottle:
    """Failed sign-ins per source (``sign_in_source``: a client address, or a browser session
    when the address is unknown), for every session of the server at once.

    A source may fail ``free`` times in a row; each failure after that locks it for
    ``first_s`` seconds, doubled per further failure up to ``max_s``. A success, or
    ``forget_s`` seconds without a failure, clears its count. ``clock`` (monotonic seconds)
    is injectable, so the schedule is tested without waiting. Thread-safe: Streamlit runs
    each session's script in its own thread. At most ``max_addresses`` are remembered (the
    quietest are forgotten first), so a flood of addresses cannot grow it without bound.

    >>> now = [0.0]
    >>> t = LoginThrottle(free=2, first_s=2.0, max_s=5.0, clock=lambda: now[0])
    >>> [t.failed("a") for _ in range(5)], t.wait("a"), t.wait("b")
    ([0.0, 0.0, 2.0, 4.0, 5.0], 5.0, 0.0)
    >>> now[0] = 5.0
    >>> t.wait("a")
    0.0
    """

    free: int = FREE_FAILURES
    first_s: float = FIRST_LOCKOUT_S
    max_s: float = MAX_LOCKOUT_S
    forget_s: float = FORGET_AFTER_S
    clock: Callable[[], float] = time.monotonic
    max_addresses: int = 10_000
    _records: dict[str, _Failures] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _current(self, address: str, now: float) -> _Failures | None:
        record = self._records.get(address)
        if record is not None and now - record.last >= self.forget_s and now >= record.locked_until:
            del self._records[address]
            return None
        return record

    def wait(self, address: str) -> float:
        """Seconds ``address`` must still wait before a password of its is checked (0: none)."""
        with self._lock:
            now = self.clock()
            record = self._current(address, now)
            return max(0.0, record.locked_until - now) if record is not None else 0.0

    def failures(self, address: str) -> int:
        """Failures in a row from ``address``."""
        with self._lock:
            record = self._current(address, self.clock())
            return record.count if record is not None else 0

    def failed(self, address: str) -> float:
        """Count a wrong password from ``address``; return the lockout it now has (seconds)."""
        with self._lock:
            now = self.clock()
            record = self._current(address, now) or _Failures(0, now, now)
            record.count += 1
            record.last = now
            extra = record.count - self.free
            lockout = 0.0 if extra <= 0 else min(self.first_s * 2.0 ** (extra - 1), self.max_s)
            record.locked_until = now + lockout
            self._records[address] = record
            if len(self._records) > self.max_addresses:
                quietest = min(self._records, key=lambda a: self._records[a].last)
                del self._records[quietest]
            return lockout

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._records.pop(address, None)


@st.cache_resource(show_spinner=False)
def login_throttle() -> LoginThrottle:
    """The server's one throttle (``st.cache_resource``: shared by every session)."""
    return LoginThrottle()


def _peer_address() -> str | None:
    """The connection's peer address (None for a loopback peer, or outside a session)."""
    try:
        address = st.context.ip_address
    except Exception:  # noqa: BLE001 -- outside a session (a bare script run)
        return None
    return address if isinstance(address, str) else None


def _forwarded_for() -> list[str]:
    """The request's ``X-Forwarded-For`` headers (believed only from a trusted proxy)."""
    try:
        values = st.context.headers.get_all("X-Forwarded-For")
    except Exception:  # noqa: BLE001 -- outside a session (a bare script run)
        return []
    return [v for v in values if isinstance(v, str)]


def _sign_in_source() -> str:
    """This session's throttle key (``sign_in_source``); AuthConfigError for a malformed
    ``DM_TRUSTED_PROXIES``."""
    proxies = trusted_proxies_in(os.environ)
    session = st.session_state.setdefault(SOURCE_KEY, secrets.token_urlsafe(12))
    return sign_in_source(_peer_address(), _forwarded_for(), session, proxies)


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def _password_ok(password: str) -> bool:
    granted = st.session_state.get(SESSION_KEY)
    return isinstance(granted, str) and hmac.compare_digest(granted, _digest(password))


def require_login() -> bool:
    """Run the sign-in page and ``st.stop()`` unless this session may use the dashboard.

    Returns True when a login is configured (and passed), False when the dashboard is open.
    The signed-in user and a "Sign out" button go to the sidebar.
    """
    section = _secrets_auth_section()
    providers = oidc_providers_in(section)
    password = shared_password()
    if providers and not st.user.is_logged_in:
        _show_sign_in(lambda: _oidc_form(providers))
    if providers:
        _require_allowed_account(section)
    if password and not _password_ok(password):
        _show_sign_in(lambda: _password_form(password))
    if not (providers or password):
        return False
    with st.sidebar:
        if providers:
            who = st.user.get("name") or st.user.get("email") or "signed in"
            st.caption(f"Signed in as **{md(who)}**")
        if st.button("Sign out", key="dm_auth.sign_out", icon=":material/logout:"):
            st.session_state.pop(SESSION_KEY, None)
            if providers:
                st.logout()
            st.rerun()
    return True


def _requested_page() -> str:
    """The last part of the path this session's page was requested at (``monitor`` for
    ``http://host/monitor?run=7``; "" for the root)."""
    try:
        url = st.context.url or ""
    except Exception:  # noqa: BLE001 -- outside a session (a bare script run)
        url = ""
    return urlparse(url).path.rstrip("/").rsplit("/", 1)[-1]


def requested_before_sign_in() -> tuple[str, dict[str, str]] | None:
    """Once signed in: the page (its url path) and query parameters the session asked for
    before the sign-in page took their place, so a shared link still leads where it
    pointed; None afterwards, or when nothing was asked for."""
    wanted = st.session_state.pop(WANTED_KEY, None)
    return wanted if wanted and wanted[0] else None


def _show_sign_in(form: Any) -> None:
    """The sign-in page as the app's only page, then stop."""
    # The sign-in page replaces the URL's path: remember what was asked for first.
    st.session_state.setdefault(WANTED_KEY, (_requested_page(), st.query_params.to_dict()))

    def sign_in() -> None:
        st.title("DM Studio")
        st.caption("Derivative manipulation workbench — sign in to continue.")
        form()

    st.navigation([st.Page(sign_in, title="Sign in", icon=":material/lock:", default=True)],
                  position="hidden").run()
    st.stop()


def _refusal(section: Any) -> str | None:
    """Why the signed-in OIDC account may not come in, or None when it may."""
    try:
        allowlist = allowlist_in(section, os.environ)
    except AuthConfigError as err:  # fail closed: nobody in until it is fixed
        return f"Sign-in is misconfigured: {md(err)}. Nobody can come in until it is fixed."
    if allowlist is None:
        return None
    email = st.user.get("email")
    if not email:
        return ("Your identity provider did not share an email address, so this dashboard "
                "cannot check that you are allowed in (its scope must include `email`).")
    if st.user.get("email_verified") is False:
        return f"Your identity provider says **{md(email)}** is not verified."
    if not allowlist.admits(email):
        return (f"**{md(email)}** is not allowed to use this dashboard. Ask its administrator to "
                f"add you to `{ALLOWED_EMAILS_KEY}` / `{ALLOWED_DOMAINS_KEY}` in `[auth]` or "
                f"to {ALLOWED_USERS_ENV}.")
    return None


def _require_allowed_account(section: Any) -> None:
    """Unless the signed-in account is allowed: a refusal and "Sign out" as the app's only
    page, then stop."""
    reason = _refusal(section)
    if reason is None:
        return

    def refused() -> None:
        st.title("DM Studio")
        st.error(reason, icon=":material/block:")
        if st.button("Sign out", key="dm_auth.refused_sign_out", icon=":material/logout:"):
            st.session_state.pop(SESSION_KEY, None)
            st.logout()

    st.navigation([st.Page(refused, title="Not allowed", icon=":material/block:", default=True)],
                  position="hidden").run()
    st.stop()


def _password_form(password: str) -> None:
    with st.form("dm_auth.password_form"):
        typed = st.text_input("Password", type="password", key="dm_auth.password",
                              help=f"The shared password set in {PASSWORD_ENV} where the "
                                   "dashboard runs.")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    try:
        source = _sign_in_source()
    except AuthConfigError as err:  # fail closed: no password is checked until it is fixed
        st.error(f"Sign-in is misconfigured: {md(err)}. Nobody can come in until it is fixed.")
        return
    throttle = login_throttle()
    waiting = throttle.wait(source)
    if waiting > 0:  # locked: what was typed is not even compared
        logger.warning("sign-in refused for %s: locked for %.0f s more after %d failed "
                       "sign-ins", source, waiting, throttle.failures(source))
        st.error(f"Too many failed sign-ins from {_whose(source)}: try again in "
                 f"{math.ceil(waiting)} s.")
        return
    if hmac.compare_digest(typed.encode(), password.encode()):
        throttle.succeeded(source)
        st.session_state[SESSION_KEY] = _digest(password)
        st.rerun()
    lockout = throttle.failed(source)
    logger.warning("failed sign-in from %s (%d in a row)%s", source, throttle.failures(source),
                   f"; locked for {lockout:.0f} s" if lockout else "")
    st.error("Wrong password." + (f" Too many failed sign-ins from {_whose(source)}: try again "
                                  f"in {math.ceil(lockout)} s." if lockout else ""))


def _oidc_form(providers: list[str]) -> None:
    for name in providers:
        label = "Sign in" if name == "default" else f"Sign in with {name.capitalize()}"
        if st.button(label, key=f"dm_auth.oidc.{name}", type="primary"):
            try:
                st.login(None if name == "default" else name)
            except Exception as err:  # noqa: BLE001 -- e.g. Authlib missing, bad [auth] section
                st.error(f"Sign-in is misconfigured: {md(err)} (see the [auth] section of "
                         ".streamlit/secrets.toml; OIDC needs `pip install 'dm-studio[auth]'`)")
