"""User text (run and group names, errors, config strings) shown as text, never as markup.

Streamlit renders Markdown in ``st.markdown``, ``st.caption``, ``st.info``/``warning``/
``error``/``success``, titles and widget labels: a run named ``![](http://host/x.png)``
would make every browser that shows it fetch that URL, and ``[Sign in again](http://host)``
would be a link the dashboard seems to offer. Plotly renders a subset of HTML (``<a href>``,
``<b>``, ``<br>``) in titles, legends and hover labels. So user text goes either into
elements that show plain text (``st.text``, ``st.code``, dataframes, select options) or
through one of these two functions first.
"""

from __future__ import annotations

import html
import re

__all__ = ["md", "plotly_text"]

# Every ASCII punctuation character may be backslash-escaped in CommonMark: escaped, none of
# them starts an image, a link, emphasis, HTML, a Streamlit directive (``:red[...]``) or
# LaTeX (``$``).
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# GitHub's autolinks are found in the text *after* parsing (escapes already undone; measured
# in Streamlit: an escaped ``http\:\/\/host`` still became a link), so ``http://``, ``www.``
# and ``name@host`` are broken up with an invisible word joiner instead.
_JOINER = "\u2060"
_AUTOLINKS = ((re.compile(r"://"), f":{_JOINER}//"),
              (re.compile(r"(?i)\b(www)\."), rf"\1{_JOINER}."),
              (re.compile("@"), f"{_JOINER}@"))


def md(text: object) -> str:
    r"""``text`` for Streamlit Markdown, shown as written and never as markup: punctuation
    escaped, line breaks flattened, and what GitHub-flavoured Markdown would turn into a
    link (``http://…``, ``www.…``, ``a@b.c``) broken by an invisible word joiner (U+2060).

    Prefer elements that show plain text (``st.text``, ``st.code``, tables, select options)
    for user text; this is for sentences that must mention it.

    >>> md("![](http://evil.example/x.png)").replace("\u2060", "<WJ>")
    '\\!\\[\\]\\(http\\:<WJ>\\/\\/evil\\.example\\/x\\.png\\)'
    >>> md("run 1"), md("ada@example.org").replace("\u2060", "<WJ>")
    ('run 1', 'ada<WJ>\\@example\\.org')
    """
    # Line breaks would end the element's paragraph (and start a heading or a list).
    flat = " ".join(str(text).split("\n"))
    for pattern, broken in _AUTOLINKS:
        flat = pattern.sub(broken, flat)
    return _PUNCTUATION.sub(r"\\\1", flat)


def plotly_text(text: object) -> str:
    """``text`` escaped for a plotly title, legend entry or hover label: plotly reads
    ``&lt;``, ``&gt;`` and ``&amp;`` as those characters (it knows no ``&quot;``, and quotes
    need no escaping once no tag can open) and HTML tags as markup.

    >>> plotly_text('<a href="http://evil.example">sign in</a> & co')
    '&lt;a href="http://evil.example"&gt;sign in&lt;/a&gt; &amp; co'
    """
    return html.escape(str(text), quote=False)
