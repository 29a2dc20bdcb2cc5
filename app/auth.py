"""Who may use the dashboard: a shared password, an OIDC login, or (on 127.0.0.1) anyone.

- **Shared password**: set ``DM_PASSWORD`` in the dashboard's environment. A session is let
  in once it typed the password (compared with ``hmac.compare_digest``, so the time taken
  does not leak how much of it was right); a wrong one costs a second. Changing
  ``DM_PASSWORD`` signs every session out.
- **OIDC** (Google, Microsoft, Okta, Auth0, ...): an ``[auth]`` section in
  ``.streamlit/secrets.toml``, as Streamlit's ``st.login`` documents it: ``redirect_uri``
  (``http://HOST:PORT/oauth2callback``), ``cookie_secret``, and the provider's
  ``client_id``, ``client_secret`` and ``server_metadata_url`` -- directly in ``[auth]``
  (one provider) or in ``[auth.NAME]`` sections (one "Sign in with NAME" button each).
  Needs Authlib (``pip install 'dm-studio[auth]'``).
- Both set: both are asked, OIDC first. Neither: the dashboard is open, which is only safe
  on 127.0.0.1 (``dm up`` warns when it binds anything else).

``app/streamlit_app.py`` calls ``require_login()`` before it builds the navigation: until a
session is signed in, the only page that exists is the sign-in page, so no other page can
be reached by its URL either.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from typing import Any

import streamlit as st

PASSWORD_ENV = "DM_PASSWORD"
SESSION_KEY = "dm_auth.password_ok"  # holds a digest of the password it was granted for
FAILED_LOGIN_DELAY_S = 1.0

__all__ = ["PASSWORD_ENV", "oidc_providers", "require_login", "shared_password"]


def shared_password() -> str | None:
    """The shared password (``$DM_PASSWORD``), or None when there is none."""
    return os.environ.get(PASSWORD_ENV) or None


def oidc_providers() -> list[str] | None:
    """The OIDC providers configured in ``[auth]`` (``"default"`` for one unnamed provider),
    or None when ``.streamlit/secrets.toml`` has no ``[auth]`` section."""
    try:
        section = st.secrets.get("auth")
    except (FileNotFoundError, OSError):  # no secrets file at all
        return None
    if not section:
        return None
    named = [name for name, value in section.items()
             if hasattr(value, "get") and value.get("client_id")]
    return named or ["default"]


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
    providers = oidc_providers()
    password = shared_password()
    if providers and not st.user.is_logged_in:
        _show_sign_in(lambda: _oidc_form(providers))
    if password and not _password_ok(password):
        _show_sign_in(lambda: _password_form(password))
    if not (providers or password):
        return False
    with st.sidebar:
        if providers:
            who = st.user.get("name") or st.user.get("email") or "signed in"
            st.caption(f"Signed in as **{who}**")
        if st.button("Sign out", key="dm_auth.sign_out", icon=":material/logout:"):
            st.session_state.pop(SESSION_KEY, None)
            if providers:
                st.logout()
            st.rerun()
    return True


def _show_sign_in(form: Any) -> None:
    """The sign-in page as the app's only page, then stop."""

    def sign_in() -> None:
        st.title("DM Studio")
        st.caption("Derivative manipulation workbench — sign in to continue.")
        form()

    st.navigation([st.Page(sign_in, title="Sign in", icon=":material/lock:", default=True)],
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
    if hmac.compare_digest(typed.encode(), password.encode()):
        st.session_state[SESSION_KEY] = _digest(password)
        st.rerun()
    time.sleep(FAILED_LOGIN_DELAY_S)  # a slower guess for whoever tries many
    st.error("Wrong password.")


def _oidc_form(providers: list[str]) -> None:
    for name in providers:
        label = "Sign in" if name == "default" else f"Sign in with {name.capitalize()}"
        if st.button(label, key=f"dm_auth.oidc.{name}", type="primary"):
            try:
                st.login(None if name == "default" else name)
            except Exception as err:  # noqa: BLE001 -- e.g. Authlib missing, bad [auth] section
                st.error(f"Sign-in is misconfigured: {err} (see the [auth] section of "
                         ".streamlit/secrets.toml; OIDC needs `pip install 'dm-studio[auth]'`)")
