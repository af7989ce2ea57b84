"""The cell parser: role blocks, JSON bodies, and errors that name the line."""
from __future__ import annotations

import pytest

from hl_notebook.errors import CellSyntaxError
from hl_notebook.parse import last_user_text, parse_cell


def test_role_blocks_keep_blank_lines_inside_and_text_before_first_role_is_user():
    body = "Intro line\n\nsystem: be brief\nuser:\nWhat is {{x}}?\n\nsecond para\nassistant: ok\n"
    assert parse_cell(body) == [
        {"role": "user", "content": "Intro line"},
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "What is {{x}}?\n\nsecond para"},
        {"role": "assistant", "content": "ok"},
    ]


def test_roles_are_case_insensitive_and_backslash_escapes_a_role_line():
    assert parse_cell("USER: hi\n\\assistant: not a role") == [
        {"role": "user", "content": "hi\nassistant: not a role"}]


def test_colon_lines_that_are_not_roles_are_text():
    assert parse_cell("user: list:\nnote: this\nzebra:") == [
        {"role": "user", "content": "list:\nnote: this\nzebra:"}]


def test_tool_role_and_json_list():
    assert parse_cell("tool: 42")[0]["role"] == "tool"
    messages = parse_cell('[{"role": "user", "content": [{"type": "text", "text": "x"}]}]')
    assert last_user_text(messages) == "x"


@pytest.mark.parametrize(("body", "line", "text"), [
    ("   \n  ", None, "the cell has no messages"),
    ("\\", None, "the cell has no messages"),  # found by the property test
    ("usr:\nhello", 1, "unknown role 'usr'; did you mean user?"),
    ("user: a\nsystme:\nb", 2, "unknown role 'systme'; did you mean system?"),
    ("user: a\nassistant:\n\n", 2, "the assistant message is empty"),
    ('[{"role": "user",\n "content": }]', 2, "invalid JSON"),
    ('[]', 1, "non-empty list"),
    ('[{"role": "bot", "content": "x"}]', None, "message 1 has role 'bot'"),
    ('[{"role": "user", "content": 3}]', None, "content must be a string"),
])
def test_errors_name_the_line(body, line, text):
    with pytest.raises(CellSyntaxError) as caught:
        parse_cell(body)
    assert caught.value.line == line
    assert text in str(caught.value)
    assert "\n" not in str(caught.value)
