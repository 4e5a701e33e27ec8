"""analytics.formatting.escape_md: stored or typed text shown through Markdown stays text."""

import re

import pytest

from analytics.formatting import WORD_JOINER as WJ
from analytics.formatting import escape_md


@pytest.mark.parametrize("value, expected", [
    ("张三", "张三"),
    ("C000000001", "C000000001"),
    ("13812345678", "13812345678"),
    ("2026-10-01", "2026-10-01"),
    ("3.5%", "3.5%"),
    ("AA+", "AA+"),
    (None, ""),
    (42, "42"),
    ("[Click](https://evil.example/login)", rf"\[Click\]\(https\:{WJ}//evil.example/login\)"),
    ("**bold**", r"\*\*bold\*\*"),
    ("__bold__", r"\_\_bold\_\_"),
    ("*it*", r"\*it\*"),
    ("~~gone~~", r"\~\~gone\~\~"),
    ("<b>x</b>", r"\<b\>x\</b\>"),
    ("![img](http://x)", rf"\!\[img\]\(http\:{WJ}//x\)"),
    ("`code`", r"\`code\`"),
    ("# Heading", r"\# Heading"),
    ("- item", r"\- item"),
    ("+ item", r"\+ item"),
    ("1. item", r"1\. item"),
    ("---", r"\---"),
    ("> quote", r"\> quote"),
    ("a | b", r"a \| b"),
    ("$x^2$", r"\$x^2\$"),
    (":red[alarm]", r"\:red\[alarm\]"),
    ("&lt;b&gt;", r"\&lt;b\&gt;"),
    ("back\\slash", r"back\\slash"),
    ("line\nbreak\r\n# title", r"line break \# title"),
    ("visit www.evil.example", f"visit www{WJ}.evil.example"),
    ("WWW.EVIL.EXAMPLE", f"WWW{WJ}.EVIL.EXAMPLE"),
    ("HTTPS://EVIL.EXAMPLE", rf"HTTPS\:{WJ}//EVIL.EXAMPLE"),
    ("mail z@example.com", f"mail z@{WJ}example.com"),
    ("<https://evil.example>", rf"\<https\:{WJ}//evil.example\>"),
])
def test_escape_md(value, expected):
    assert escape_md(value) == expected


# What Streamlit's Markdown renders as a link, emphasis, image, code or HTML, once backslash escapes
# are taken out; autolink literals are matched as its renderer does (on the unescaped text).
_ESCAPED = re.compile(r"\\[!-/:-@\[-`{-~]")
_ACTIVE = re.compile(r"\[[^\]]*\]\(|\*\*|__|(?<![\w*])\*\S|~~|<[a-zA-Z/!]|`|https?://|www\.|[\w.+-]@[\w-]")


def active_markdown(text: str) -> list[str]:
    """The Markdown constructs ``text`` would render (a link, emphasis, HTML, an autolink...)."""
    return _ACTIVE.findall(_ESCAPED.sub("", text))


@pytest.mark.parametrize("payload", [
    "[Click](https://evil.example/login)", "**bold**", "<b>x</b>", "![img](http://x)", "*x*", "`x`",
    "www.evil.example", "z@example.com", "https://evil.example", "<https://evil.example>",
])
def test_no_payload_stays_active_once_escaped(payload):
    assert active_markdown(payload)  # the checker sees the raw payload
    assert active_markdown(escape_md(payload)) == []
    # Whatever surrounds it: the escape is local to the value.
    assert active_markdown(f"Name: {escape_md(payload)} · C1") == []
