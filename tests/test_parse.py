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


# -- hostile input (issue 10, item 5) -------------------------------------------------------------
def test_deeply_nested_json_is_a_one_line_cell_error():
    with pytest.raises(CellSyntaxError) as caught:
        parse_cell("[" * 5000)
    assert str(caught.value) == "line 1: invalid JSON: nested too deeply"
    assert caught.value.line == 1


# every character str.splitlines() treats as a line break besides \n, \r and \r\n
SEPARATORS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("separator", SEPARATORS)
def test_only_newlines_end_a_line(separator):
    body = f"user: first{separator}assistant: not a role\nsecond{separator}line{separator}\nassistant:{separator}ok"
    assert parse_cell(body) == [
        {"role": "user", "content": f"first{separator}assistant: not a role\nsecond{separator}line{separator}"},
        {"role": "assistant", "content": f"{separator}ok"},
    ]


def test_crlf_and_lf_line_ends_give_the_same_messages():
    assert parse_cell("system: s\r\nuser: a\r\n\r\nb\r\n") == parse_cell("system: s\nuser: a\n\nb\n") == [
        {"role": "system", "content": "s"}, {"role": "user", "content": "a\n\nb"}]


def test_a_lone_carriage_return_stays_in_the_text():
    assert parse_cell("user: a\rassistant: b") == [{"role": "user", "content": "a\rassistant: b"}]


@pytest.mark.parametrize(("body", "line"), [
    ("user: fine\nbroken \ud800 text", 2),
    ("\udfff", 1),
    ('[{"role": "user",\n "content": "\ud83d"}]', 2),  # a raw surrogate in a JSON body too
])
def test_a_lone_surrogate_is_rejected_with_its_line(body, line):
    with pytest.raises(CellSyntaxError) as caught:
        parse_cell(body)
    assert caught.value.line == line
    assert "is a lone surrogate, not valid UTF-8" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_escaped_surrogate_in_a_json_body_is_kept_for_the_client_to_reject():
    """JSON escapes are data, not cell text: the client's encoder names the field (test_client_secrets)."""
    assert parse_cell('[{"role": "user", "content": "a \\ud800"}]') == [{"role": "user", "content": "a \ud800"}]


def test_a_surrogate_pair_is_ordinary_text():
    assert parse_cell("user: \U0001F600") == [{"role": "user", "content": "\U0001F600"}]
