"""Home page (app/views/home.py) under AppTest."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import APP, TIMEOUT, app_db_fixture, chart, decode, fabricate, trace  # noqa: F401

from dm_core.schemes import SCHEMES
from dm_store import Store


def test_home_shows_the_queue_and_the_default_edf(app_db):
    store = Store(app_db)
    fabricate(store, iterations=20, eval_every=10)
    fabricate(store, iterations=20, eval_every=10, upto=5, finish=False)
    at = AppTest.from_file(APP.format("home"), default_timeout=TIMEOUT).run()
    assert not at.exception
    shown = {m.label: int(m.value) for m in at.metric}
    assert shown == store.queue_counts() == {"queued": 0, "running": 1, "succeeded": 1,
                                             "failed": 0, "cancelled": 0}
    lam = SCHEMES.get("dm").defaults()["lam"]
    psi = decode(trace(chart(at, "home.edf"), "ψ")["x"])
    assert psi[0] == pytest.approx(lam / (lam + 1))


def test_home_follows_the_designer(app_db):
    at = AppTest.from_file(APP.format("home"), default_timeout=TIMEOUT)
    at.session_state["designer.family"] = "dm"
    at.session_state["designer.dm.lam"] = 3.0
    at.session_state["designer.dm.beta"] = 10.0
    at.run()
    assert decode(trace(chart(at, "home.edf"), "ψ")["x"])[0] == pytest.approx(0.75)
    assert any("No runs yet" in i.value for i in at.info)
