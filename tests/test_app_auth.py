"""The dashboard's sign-in (app/auth.py) through its entry file, app/streamlit_app.py, under
AppTest: nothing but the sign-in page until the session is signed in, with a shared password
(DM_PASSWORD) or an OIDC login (an ``[auth]`` secrets section, ``st.user``), and nothing but a
refusal for an OIDC account outside the allowlist (``allowed_emails``/``allowed_domains``,
DM_ALLOWED_USERS)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from test_app_support import TIMEOUT, app_db_fixture, rendered  # noqa: F401

import app.auth
import studio.access
from app.nav import PAGES

ENTRY = str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py")
OIDC = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
        "client_id": "dm-studio", "client_secret": "not-a-real-secret",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}


@pytest.fixture(autouse=True)
def no_login_configured(monkeypatch):
    monkeypatch.delenv("DM_PASSWORD", raising=False)
    monkeypatch.delenv("DM_ALLOWED_USERS", raising=False)
    app.auth.login_throttle.clear()  # failed sign-ins of one test never lock out another's
    yield
    app.auth.login_throttle.clear()


def entry() -> AppTest:
    return AppTest.from_file(ENTRY, default_timeout=TIMEOUT)


def shows_the_home_page(at: AppTest) -> bool:
    # The home page's queue metrics and the sidebar's database caption.
    return (any(m.label == "queued" for m in at.metric)
            and any("Database:" in c.value for c in at.sidebar.caption))


def shows_only_the_sign_in(at: AppTest) -> bool:
    return (any("sign in to continue" in c.value for c in at.caption)
            and not at.metric and not at.get("plotly_chart")
            and not any("Database:" in c.value for c in at.sidebar.caption))


def test_without_a_login_configured_the_dashboard_is_open(app_db):
    at = entry().run()
    assert not at.exception
    assert shows_the_home_page(at)
    assert not any(b.label == "Sign out" for b in at.sidebar.button)


def test_shared_password_gate(app_db, monkeypatch):
    monkeypatch.setenv("DM_PASSWORD", "correct horse")
    at = entry().run()
    assert not at.exception
    assert shows_only_the_sign_in(at)
    [field] = at.text_input
    assert field.label == "Password"

    field.input("wrong horse")
    at.button[0].click().run()  # the form's submit button
    assert shows_only_the_sign_in(at)
    assert [e.value for e in at.error] == ["Wrong password."]

    at.text_input[0].input("correct horse")
    at.button[0].click().run()
    assert not at.exception
    assert shows_the_home_page(at) and not at.error
    at.run()  # the session stays signed in
    assert shows_the_home_page(at)

    monkeypatch.setenv("DM_PASSWORD", "a new password")  # changing it signs everyone out
    at.run()
    assert shows_only_the_sign_in(at)


def test_sign_out(app_db, monkeypatch):
    monkeypatch.setenv("DM_PASSWORD", "pw")
    at = entry().run()
    at.text_input[0].input("pw")
    at.button[0].click().run()
    assert shows_the_home_page(at)
    # AppTest drops a click made in the very run that moved from the sign-in page to home
    # (a browser has reported the new page by then): one plain run first, as the browser's.
    at.run()
    [sign_out] = [b for b in at.sidebar.button if b.label == "Sign out"]
    sign_out.click().run()
    assert shows_only_the_sign_in(at)


@pytest.mark.parametrize("page", [p for p in PAGES if p.key != "home"], ids=lambda p: p.key)
def test_no_page_is_reachable_by_its_url_before_signing_in(app_db, monkeypatch, page):
    monkeypatch.setenv("DM_PASSWORD", "pw")
    # The first request a fresh server sees, for /<page> (AppTest's switch_page before any
    # run is exactly that). With a pages/ folder beside the entry file Streamlit would run
    # the page file alone here, skipping the sign-in: the folder is app/views for that reason.
    at = entry().switch_page(page.path).run()
    assert not at.exception
    assert shows_only_the_sign_in(at), page.key
    assert not any(t.value == page.title for t in at.title)
    assert not at.dataframe and not at.get("plotly_chart")
    # Once signed in, the same URL is that page.
    at.text_input[0].input("pw")
    at.button[0].click().run()
    at.switch_page(page.path).run()
    assert not at.exception
    assert any(t.value == page.title for t in at.title), [t.value for t in at.title]


def test_oidc_login(app_db, monkeypatch):
    calls = []
    monkeypatch.setattr(st, "login", lambda provider=None: calls.append(provider))
    at = entry()
    at.secrets["auth"] = OIDC
    at.user = {"is_logged_in": False}
    at.run()
    assert not at.exception
    assert shows_only_the_sign_in(at)
    [button] = at.button
    assert button.label == "Sign in"
    button.click().run()
    assert calls == [None]  # st.login() with the one, unnamed provider

    at.user = {"is_logged_in": True, "name": "Ada Lovelace", "email": "ada@example.org"}
    at.run()
    assert not at.exception
    assert shows_the_home_page(at)
    assert any("Ada Lovelace" in c.value for c in at.sidebar.caption)


def test_oidc_named_providers_and_both_gates(app_db, monkeypatch):
    calls = []
    monkeypatch.setattr(st, "login", lambda provider=None: calls.append(provider))
    monkeypatch.setenv("DM_PASSWORD", "pw")
    at = entry()
    at.secrets["auth"] = {"redirect_uri": OIDC["redirect_uri"], "cookie_secret": "x" * 32,
                          "google": {k: OIDC[k] for k in ("client_id", "client_secret",
                                                          "server_metadata_url")},
                          "okta": {k: OIDC[k] for k in ("client_id", "client_secret",
                                                        "server_metadata_url")}}
    at.user = {"is_logged_in": False}
    at.run()
    assert [b.label for b in at.button] == ["Sign in with Google", "Sign in with Okta"]
    at.button[1].click().run()
    assert calls == ["okta"]
    # Signed in with OIDC, the shared password is still asked for: both gates hold.
    at.user = {"is_logged_in": True, "email": "ada@example.org"}
    at.run()
    assert shows_only_the_sign_in(at) and at.text_input[0].label == "Password"
    at.text_input[0].input("pw")
    at.button[0].click().run()
    assert shows_the_home_page(at)


def test_oidc_misconfiguration_is_explained(app_db, monkeypatch):
    def broken(provider=None):
        raise st.errors.StreamlitAPIException("Authlib is not installed")

    monkeypatch.setattr(st, "login", broken)
    at = entry()
    at.secrets["auth"] = OIDC
    at.user = {"is_logged_in": False}
    at.run()
    at.button[0].click().run()
    assert not at.exception
    [error] = at.error
    assert "Authlib is not installed" in error.value and "dm-studio[auth]" in error.value
    assert shows_only_the_sign_in(at)


# ---------------------------------------------------------------- OIDC allowlist

def shows_only_a_refusal(at: AppTest, says: str) -> bool:
    return (any(says in rendered(e.value) for e in at.error)
            and [b.label for b in at.button] == ["Sign out"]
            and not at.metric and not at.get("plotly_chart") and not at.text_input
            and not any("Database:" in c.value for c in at.sidebar.caption))


def signed_in_as(monkeypatch, auth: dict, user: dict) -> AppTest:
    monkeypatch.setattr(st, "login", lambda provider=None: None)
    at = entry()
    at.secrets["auth"] = auth
    at.user = {"is_logged_in": True, "name": "Someone", **user}
    return at.run()


ALLOWLISTS = {
    "emails": ({"allowed_emails": ["Ada@Example.org", "grace@navy.mil"]}, {}),
    "domains": ({"allowed_domains": ["example.org"]}, {}),
    "@domains": ({"allowed_domains": ["@example.org"]}, {}),
    "env": ({}, {"DM_ALLOWED_USERS": "grace@navy.mil, @example.org"}),
    "env and secrets combined": ({"allowed_emails": ["ada@example.org"]},
                                 {"DM_ALLOWED_USERS": "@navy.mil"}),
}


@pytest.mark.parametrize("source", list(ALLOWLISTS))
def test_oidc_allowlist_admits_only_listed_accounts(app_db, monkeypatch, source):
    keys, env = ALLOWLISTS[source]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    at = signed_in_as(monkeypatch, OIDC | keys, {"email": "ada@example.org"})
    assert not at.exception
    assert shows_the_home_page(at)
    at = signed_in_as(monkeypatch, OIDC | keys, {"email": "mallory@evil.example"})
    assert not at.exception
    assert shows_only_a_refusal(at, "mallory@evil.example** is not allowed")
    # A look-alike domain is not the domain.
    at = signed_in_as(monkeypatch, OIDC | keys, {"email": "ada@example.org.evil.example"})
    assert shows_only_a_refusal(at, "is not allowed")


def test_refused_account_can_sign_out(app_db, monkeypatch):
    logouts = []
    monkeypatch.setattr(st, "logout", lambda: logouts.append(True))
    at = signed_in_as(monkeypatch, OIDC | {"allowed_domains": ["example.org"]},
                      {"email": "eve@elsewhere.example"})
    assert shows_only_a_refusal(at, "not allowed")
    at.button[0].click().run()
    assert logouts == [True]


@pytest.mark.parametrize(("user", "says"), [
    ({"email": "ada@example.org", "email_verified": False}, "is not verified"),
    ({}, "did not share an email address"),
])
def test_oidc_allowlist_refuses_unverified_or_missing_emails(app_db, monkeypatch, user, says):
    at = signed_in_as(monkeypatch, OIDC | {"allowed_domains": ["example.org"]}, user)
    assert not at.exception
    assert shows_only_a_refusal(at, says)


@pytest.mark.parametrize(("keys", "env", "says"), [
    ({"allowed_emails": 3}, {}, "[auth] allowed_emails must be a list of strings"),
    ({"allowed_emails": ["example.org"]}, {}, "'example.org' is not an email address"),
    ({"allowed_domains": ["ada@example.org"]}, {}, "'ada@example.org' is not a domain"),
    ({}, {"DM_ALLOWED_USERS": "example.org"}, "DM_ALLOWED_USERS (emails, or @domain entries)"),
])
def test_a_malformed_allowlist_lets_nobody_in(app_db, monkeypatch, keys, env, says):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    at = signed_in_as(monkeypatch, OIDC | keys, {"email": "ada@example.org"})
    assert not at.exception
    assert shows_only_a_refusal(at, says)


def test_an_empty_allowlist_admits_nobody(app_db, monkeypatch):
    at = signed_in_as(monkeypatch, OIDC | {"allowed_emails": []}, {"email": "ada@example.org"})
    assert shows_only_a_refusal(at, "is not allowed")


def test_allowlist_then_password(app_db, monkeypatch):
    """An allowed account still types the shared password when DM_PASSWORD is set too."""
    monkeypatch.setenv("DM_PASSWORD", "pw")
    at = signed_in_as(monkeypatch, OIDC | {"allowed_emails": ["ada@example.org"]},
                      {"email": "ada@example.org"})
    assert shows_only_the_sign_in(at) and at.text_input[0].label == "Password"


def test_the_login_rule_is_shared_with_dm_up():
    """Empty [auth] table: no login (dm up warns); anything in it: a login."""
    assert not studio.access.login_required({}, {})
    assert not studio.access.login_required(None, {"DM_PASSWORD": ""})
    assert studio.access.login_required({"redirect_uri": "x"}, {})
    assert studio.access.login_required({}, {"DM_PASSWORD": "pw"})
    assert studio.access.oidc_providers_in({"google": {"client_id": "a"}, "allowed_emails": ["a@b"]}) \
        == ["google"]


# ---------------------------------------------------------------- brute force

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _sign_in(at: AppTest, password: str) -> AppTest:
    at.text_input[0].input(password)
    at.button[0].click().run()
    return at


class Connection:
    """What ``st.context`` reports to every session: the peer's address (None, as Streamlit
    reports a loopback peer) and the request's headers."""

    def __init__(self, monkeypatch) -> None:
        from streamlit.runtime.context import StreamlitHeaders

        self.peer: str | None = None
        self.headers: list[tuple[str, str]] = []
        proxy = type(st.context)
        monkeypatch.setattr(proxy, "ip_address", property(lambda _: self.peer))
        monkeypatch.setattr(proxy, "headers", property(lambda _: StreamlitHeaders(self.headers)))


@pytest.fixture
def connection(monkeypatch) -> Connection:
    monkeypatch.delenv("DM_TRUSTED_PROXIES", raising=False)
    return Connection(monkeypatch)


@pytest.fixture
def throttle_clock():
    """The server's throttle on a clock the test moves."""
    fake = FakeClock()
    app.auth.login_throttle().clock = fake
    return fake


@pytest.fixture
def clock(throttle_clock, connection):
    """The throttle's clock, and every session comes from one (remote) address unless a test
    says otherwise."""
    connection.peer = "203.0.113.7"
    return throttle_clock


def test_failed_sign_ins_lock_the_address_out_across_sessions(app_db, monkeypatch, clock):
    """Many parallel sessions do not multiply the guesses: the count is per address, for
    the whole server; while locked, not even the right password gets in."""
    monkeypatch.setenv("DM_PASSWORD", "correct horse")
    free = app.auth.FREE_FAILURES
    sessions = [entry().run() for _ in range(free + 1)]  # one guess per fresh session
    for at in sessions[:free]:
        _sign_in(at, "wrong")
        assert [e.value for e in at.error] == ["Wrong password."]
    last = _sign_in(sessions[free], "still wrong")
    assert "try again in 2 s" in last.error[0].value
    # Another session from the same address, with the right password: refused while locked.
    late = _sign_in(entry().run(), "correct horse")
    assert shows_only_the_sign_in(late) and "try again in 2 s" in late.error[0].value
    clock.now += 2.0  # the lockout has passed: the right password gets in
    _sign_in(late, "correct horse")
    assert shows_the_home_page(late)
    assert app.auth.login_throttle().failures("203.0.113.7") == 0  # a success clears the count


def test_each_further_failure_doubles_the_wait_up_to_a_cap(app_db, monkeypatch, clock):
    monkeypatch.setenv("DM_PASSWORD", "pw")
    throttle = app.auth.login_throttle()
    waits = []
    at = entry().run()
    for _ in range(app.auth.FREE_FAILURES + 12):
        _sign_in(at, "guess")
        waits.append(throttle.wait("203.0.113.7"))
        clock.now += waits[-1]  # the guesser waits exactly as long as it must
    expected = [0.0] * app.auth.FREE_FAILURES + [min(2.0 * 2**k, app.auth.MAX_LOCKOUT_S)
                                                 for k in range(12)]
    assert waits == expected
    assert throttle.wait("198.51.100.1") == 0.0  # another address is not affected


def test_failures_are_logged_with_the_address_never_the_password(app_db, monkeypatch, clock,
                                                                  caplog):
    monkeypatch.setenv("DM_PASSWORD", "pw")
    caplog.set_level(logging.WARNING, logger="app.auth")
    at = entry().run()
    for _ in range(app.auth.FREE_FAILURES + 1):
        _sign_in(at, "hunter2-guess")
    _sign_in(at, "hunter2-guess")  # while locked
    records = [r for r in caplog.records if r.name == "app.auth"]
    assert len(records) == app.auth.FREE_FAILURES + 2
    assert all("203.0.113.7" in r.getMessage() for r in records)
    assert "locked for 2 s" in records[app.auth.FREE_FAILURES].getMessage()
    assert "refused" in records[-1].getMessage()
    assert not any("hunter2" in r.getMessage() or "hunter2" in str(r.args) for r in caplog.records)


def test_a_guessers_failures_never_lock_out_another_sessions_right_password(app_db, monkeypatch,
                                                                          throttle_clock,
                                                                          connection):
    """Every client behind loopback (a browser on this machine, a proxy on it) has no address:
    one guesser locks only its own browser session, and another session's right password gets
    in at once (issue 25, item 6)."""
    monkeypatch.setenv("DM_PASSWORD", "correct horse")
    connection.peer = None  # what Streamlit reports for 127.0.0.1 and ::1
    guesser = entry().run()
    for _ in range(app.auth.FREE_FAILURES + 3):
        _sign_in(guesser, "wrong")
    user = _sign_in(entry().run(), "correct horse")
    assert not user.error and shows_the_home_page(user)
    assert "Too many failed sign-ins from this browser session" in guesser.error[0].value
    _sign_in(guesser, "correct horse")  # the guesser itself stays locked, even with it
    assert shows_only_the_sign_in(guesser) and "try again in" in guesser.error[0].value


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(app_db, monkeypatch, clock,
                                                               connection):
    """A guesser that claims a new X-Forwarded-For address in every session is still its one
    address while no proxy is trusted; with the peer trusted as the proxy (DM_TRUSTED_PROXIES),
    each client is the address the proxy appended -- not what the client put left of it."""
    monkeypatch.setenv("DM_PASSWORD", "pw")
    throttle, free = app.auth.login_throttle(), app.auth.FREE_FAILURES
    for i in range(free + 1):
        connection.headers = [("X-Forwarded-For", f"192.0.2.{i}")]
        guess = _sign_in(entry().run(), "guess")
    assert "Too many failed sign-ins from your address: try again in 2 s" in guess.error[0].value
    assert throttle.failures("203.0.113.7") == free + 1
    assert all(throttle.failures(f"192.0.2.{i}") == 0 for i in range(free + 1))

    monkeypatch.setenv("DM_TRUSTED_PROXIES", "203.0.113.7")  # the peer is our reverse proxy
    # The client's own claim, then the address the proxy appended.
    connection.headers = [("X-Forwarded-For", "192.0.2.250, 198.51.100.9")]
    for _ in range(free + 1):
        guess = _sign_in(entry().run(), "guess")
    assert "try again in 2 s" in guess.error[0].value
    assert throttle.failures("198.51.100.9") == free + 1 and throttle.failures("192.0.2.250") == 0
    connection.headers = [("X-Forwarded-For", "198.51.100.20")]  # another client, same proxy
    user = _sign_in(entry().run(), "pw")
    assert shows_the_home_page(user)


LOOPBACK_PROXY = "127.0.0.1"


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "source"), [
    ("203.0.113.7", [], "", "203.0.113.7"),
    (None, [], "", "session s"),  # Streamlit gives no address for a loopback peer
    (None, ["198.51.100.9"], "", "session s"),  # header ignored: no proxy trusted
    ("203.0.113.7", ["198.51.100.9"], "", "203.0.113.7"),
    ("203.0.113.7", ["198.51.100.9"], LOOPBACK_PROXY, "203.0.113.7"),  # not the trusted one
    (None, ["198.51.100.9"], LOOPBACK_PROXY, "198.51.100.9"),
    (None, ["6.6.6.6, 198.51.100.9"], LOOPBACK_PROXY, "198.51.100.9"),  # left part: the client's
    (None, ["6.6.6.6", "198.51.100.9"], LOOPBACK_PROXY, "198.51.100.9"),  # repeated header
    (None, ["198.51.100.9, 10.1.2.3"], "127.0.0.1, 10.0.0.0/8", "198.51.100.9"),  # two proxies
    ("10.1.2.3", ["198.51.100.9"], "10.0.0.0/8", "198.51.100.9"),
    (None, ["198.51.100.9"], "10.0.0.0/8", "session s"),  # loopback peer not trusted
    (None, [], LOOPBACK_PROXY, "session s"),  # the proxy forwarded nothing
    (None, ["unknown"], LOOPBACK_PROXY, "session s"),
    (None, ["2001:db8::7"], "::1", "2001:db8::7"),
])
def test_the_sign_in_source(peer, forwarded, trusted, source):
    proxies = studio.access.trusted_proxies_in({"DM_TRUSTED_PROXIES": trusted})
    assert app.auth.sign_in_source(peer, forwarded, "s", proxies) == source


def test_a_malformed_trusted_proxies_setting_lets_nobody_in(app_db, monkeypatch):
    monkeypatch.setenv("DM_PASSWORD", "pw")
    monkeypatch.setenv("DM_TRUSTED_PROXIES", "127.0.0.1, the-proxy")
    with pytest.raises(studio.access.AuthConfigError, match="DM_TRUSTED_PROXIES: 'the-proxy'"):
        studio.access.exposure_warnings("127.0.0.1", 8501, None, {"DM_TRUSTED_PROXIES": "the-proxy"})
    at = _sign_in(entry().run(), "pw")
    assert shows_only_the_sign_in(at)
    said = rendered(at.error[0].value)
    assert "misconfigured" in said and "DM_TRUSTED_PROXIES: 'the-proxy'" in said


def test_a_link_opened_before_signing_in_leads_where_it_pointed(app_db, monkeypatch):
    """A shared /monitor?run=N link: the sign-in page takes the URL's place, then the
    session goes on to that page and run (the browser's requested path, st.context.url,
    stands in for AppTest, which requests no path)."""
    from test_app_support import fabricate

    from dm_store import Store

    run_id = fabricate(Store(app_db), name="shared", iterations=40, eval_every=20)
    fabricate(Store(app_db), name="newer", iterations=40, eval_every=20)
    monkeypatch.setenv("DM_PASSWORD", "pw")
    monkeypatch.setattr(app.auth, "_requested_page", lambda: "monitor")
    at = entry()
    at.query_params["run"] = str(run_id)
    at.run()
    assert shows_only_the_sign_in(at)
    at.text_input[0].input("pw")
    at.button[0].click().run()
    assert [t.value for t in at.title] == ["Monitor"]
    assert at.selectbox(key="monitor.run").value == run_id
    assert at.query_params == {"run": str(run_id)}
    at.run()  # only once: the session now goes where the user goes
    assert [t.value for t in at.title] == ["Monitor"]
