"""Form fields built from the registries (app/forms.py), through the Launch page under AppTest."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import APP, TIMEOUT, app_db_fixture, errors_under  # noqa: F401

from app.forms import parse_matrix_text

TRANSITION = "L.dataset.noise.asymmetric.transition"


def test_the_matrix_field_says_json_in_its_help_and_in_its_error(app_db):
    """The field asks for JSON; its error used to say "cannot read … as a comma-separated
    list", a format the field does not take."""
    at = AppTest.from_file(APP.format("launch"), default_timeout=TIMEOUT).run()
    at.selectbox(key="L.dataset.noise.kind").set_value("asymmetric").run()
    field = at.text_area(key=TRANSITION)
    assert "JSON" in field.help
    field.input("[[0.6, 0.4], [0.4, 0.6").run()  # an unclosed row
    messages = errors_under(at, TRANSITION)
    assert messages and all("JSON matrix" in m and "comma-separated" not in m for m in messages)
    assert any("[[0.6, 0.4], [0.4, 0.6]]" in m for m in messages)  # an example of the format
    at.text_area(key=TRANSITION).input("[[0.6, 0.4], [0.4, 0.6]]").run()
    assert not errors_under(at, TRANSITION)


@pytest.mark.parametrize("text", ["0.6, 0.4", "[0.6, 0.4]", "{a: 1}", "[[1, 0], [0, 1"])
def test_anything_but_a_list_of_rows_is_refused_naming_the_json_format(text):
    with pytest.raises(ValueError, match="as a JSON matrix: write one list per row"):
        parse_matrix_text(text)


def test_a_matrix_reads_as_its_rows():
    assert parse_matrix_text(" [[0.6, 0.4],\n [0.4, 0.6]] ") == [[0.6, 0.4], [0.4, 0.6]]
    assert parse_matrix_text("") == []
