"""Output parsing: the two formats, normalised matching, ambiguity, SFT targets, and fuzzing (never raises)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner_rl.parsing import (
    OUTPUT_FORMATS,
    Parsed,
    canonical_action,
    format_target,
    normalize_action,
    parse_completion,
)

# the valid actions of cheese_sandwich, layout seed 1, initial state
VALID = [
    "Move robot1 from table4 to sink1",
    "Move robot1 from table4 to table1",
    "Move robot1 from table4 to table2",
    "Move robot1 from table4 to table3",
    "Move robot1 from table4 to table5",
    "Do nothing",
]
GO = "Move robot1 from table4 to table2"


# --- normalisation and matching ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Do nothing", "do nothing"),
        ('  "Pick up  Bread1." ', "pick up bread1"),
        ("`Do\tnothing`", "do nothing"),
        ("'Do nothing'!?", "do nothing"),
        ('"Do nothing".', "do nothing"),  # punctuation outside the quotes
        ("\u201cDo nothing\u201d", "do nothing"),  # typographic quotes
        ("Do, nothing", "do, nothing"),  # inner punctuation is kept
        (". Do nothing", ". do nothing"),  # leading punctuation is kept
        ("", ""),
        ("  ..  ", ""),
    ],
)
def test_normalize_action(text, expected):
    assert normalize_action(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        GO,
        GO.upper(),
        "move ROBOT1 from Table4 to TABLE2",
        "Move  robot1\tfrom table4   to table2",
        f"  {GO}  ",
        f"{GO}.",
        f"{GO}!",
        f'"{GO}"',
        f"'{GO}'.",
        f"`{GO}`",
        f"``{GO}``",
        f'"{GO}."',
    ],
)
def test_canonical_action_accepts_harmless_variants(text):
    assert canonical_action(text, VALID) == GO


@pytest.mark.parametrize(
    "text",
    [
        "Move robot1 from table4 to table",  # a prefix of several actions
        "Move robot1 from table4 to table2 now",  # extra words
        "Move robot1 to table2",  # missing words
        "Move robot1 from table4 to table 2",  # a split name is a different name
        "Move robot1, from table4 to table2",  # inner punctuation
        "Move robot1 from table4 to table6",  # not in the list
        "",
        "Action: Do nothing",  # the keyword is not part of an action
        "\x00\x01",
    ],
)
def test_canonical_action_rejects_other_text(text):
    assert canonical_action(text, VALID) is None


def test_canonical_action_returns_the_exact_valid_string():
    assert canonical_action("do NOTHING.", VALID) == "Do nothing"
    assert canonical_action("do nothing", ["Do nothing", "Do nothing"]) == "Do nothing"  # duplicates are one action


def test_ambiguous_normal_forms_are_invalid_even_for_an_exact_text():
    valid = ["Do nothing", "do  nothing", "Wait"]  # the first two normalise to "do nothing"
    for text in ("Do nothing", "do  nothing", "DO NOTHING."):
        assert canonical_action(text, valid) is None
        p = parse_completion(f"Action: {text}", "action", valid)
        assert (p.action, p.well_formed, p.error) == (None, True, "ambiguous: matches 2 valid actions")
    assert canonical_action("wait", valid) == "Wait"  # the unambiguous one still matches
    punct = ["Do nothing", "Do nothing.", "Wait"]  # differ only by trailing punctuation
    assert canonical_action("Do nothing", punct) is None
    quoted = ["'Wait'", "Wait"]
    assert canonical_action("`wait`", quoted) is None


def test_canonical_action_non_string_and_empty_list():
    assert canonical_action(None, VALID) is None  # type: ignore[arg-type]
    assert canonical_action("Do nothing", []) is None


# --- the `action` format ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "completion",
    [
        f"Action: {GO}",
        f"Action:{GO}",
        f"  \n Action:   {GO} \n\n",
        f"Action: {GO.lower()}.",
        f"Action: `{GO}`",
        f"Action: {GO}\r\n",
        f"Action:\n{GO}",  # a line break after the keyword is whitespace too
    ],
)
def test_action_format_well_formed_and_valid(completion):
    assert parse_completion(completion, "action", VALID) == Parsed(GO, True, None, completion.split(":", 1)[1].strip())


@pytest.mark.parametrize(
    ("completion", "error"),
    [
        ("", "no 'Action:'"),
        ("   \n", "no 'Action:'"),
        (GO, "no 'Action:'"),
        (f"action: {GO}", "no 'Action:'"),  # the keyword's case is the format
        (f"ACTION: {GO}", "no 'Action:'"),
        (f"Action : {GO}", "no 'Action:'"),
        ("Action:", "empty action"),
        ("Action:   \n  ", "empty action"),
        (f"I will go. Action: {GO}", "text before 'Action:'"),
        (f"Sure!\nAction: {GO}", "text before 'Action:'"),
        (f"Action: {GO}\nbecause bread is there", "text after the action line"),
        (f"Action: {GO}\nAction: Do nothing", "more than one 'Action:'"),
        (f"Action: {GO}\nAction: {GO}", "more than one 'Action:'"),  # even when both lines agree
        (f"Action: Action: {GO}", "more than one 'Action:'"),
        (f"<think>x</think>\nAction: {GO}", "text before 'Action:'"),  # a think block is not the action format
    ],
)
def test_action_format_malformed(completion, error):
    assert parse_completion(completion, "action", VALID) == Parsed(None, False, error)


def test_action_format_well_formed_but_invalid_keeps_the_text():
    p = parse_completion("Action: Fly to the moon.", "action", VALID)
    assert p == Parsed(None, True, "not a valid action", "Fly to the moon.")
    assert not p.valid


def test_non_string_completions_are_malformed():
    for junk in (None, b"Action: Do nothing", 3, ["Action: Do nothing"]):
        for fmt in OUTPUT_FORMATS:
            assert parse_completion(junk, fmt, VALID) == Parsed(None, False, "the completion is not a string")


def test_unknown_format_raises():
    with pytest.raises(ValueError, match="unknown output format 'json'"):
        parse_completion("Action: Do nothing", "json", VALID)


# --- the `think` format -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "completion",
    [
        f"<think>\nbread is on table2\n</think>\nAction: {GO}",
        f"<think></think>Action: {GO}",  # an empty thought, no space
        f"  <think>a\n\nb</think>  \n\n Action:{GO}.  ",
        f"<think>Action: Do nothing? No.\nAction: wait</think>\nAction: {GO}",  # `Action:` inside the thought is fine
    ],
)
def test_think_format_well_formed_and_valid(completion):
    p = parse_completion(completion, "think", VALID)
    assert (p.action, p.well_formed, p.error) == (GO, True, None)


@pytest.mark.parametrize(
    ("completion", "error"),
    [
        (f"Action: {GO}", "no <think>...</think> block"),  # the think block is required
        (f"<think>no end\nAction: {GO}", "no <think>...</think> block"),
        (f"no start</think>\nAction: {GO}", "no <think>...</think> block"),
        (f"<think>a</think><think>b</think>\nAction: {GO}", "more than one <think> or </think>"),
        (f"<think>a<think>b</think>\nAction: {GO}", "more than one <think> or </think>"),
        (f"<think>a</think>\nAction: {GO}</think>", "more than one <think> or </think>"),
        (f"Let me think. <think>a</think>\nAction: {GO}", "text before <think>"),
        (f"</think>x<think>\nAction: {GO}", "text before <think>"),
        ("<think>I should go to table2</think>", "no 'Action:'"),
        (f"<think>a</think>\nSo:\nAction: {GO}", "text before 'Action:'"),
        (f"<think>a</think>\nAction: {GO}\nAction: Do nothing", "more than one 'Action:'"),
        (f"<think>a</think>\nAction: {GO}\nDone.", "text after the action line"),
        ("<think>a</think>\nAction: ", "empty action"),
    ],
)
def test_think_format_malformed(completion, error):
    assert parse_completion(completion, "think", VALID) == Parsed(None, False, error)


# --- SFT targets ------------------------------------------------------------------------------------------------
def test_format_target_exact_text():
    assert format_target(GO, "action") == f"Action: {GO}"
    assert format_target(GO, "think", "bread first") == f"<think>\nbread first\n</think>\nAction: {GO}"
    assert format_target(GO, "think") == f"<think>\n</think>\nAction: {GO}"
    assert format_target(GO, "think", "  \n") == f"<think>\n</think>\nAction: {GO}"


@pytest.mark.parametrize(
    ("action", "fmt", "thought"),
    [
        (GO, "action", "a thought"),  # a thought needs the think format
        ("", "action", None),
        ("Do\nnothing", "action", None),
        ("Action: Do nothing", "action", None),
        (GO, "think", "a <think> b"),
        (GO, "think", "done</think>"),
        (GO, "xml", None),
    ],
)
def test_format_target_rejects_what_could_not_be_read_back(action, fmt, thought):
    with pytest.raises(ValueError):
        format_target(action, fmt, thought)


@settings(max_examples=300, deadline=None)
@given(
    action=st.sampled_from(VALID),
    fmt=st.sampled_from(OUTPUT_FORMATS),
    thought=st.none() | st.text().filter(lambda t: "<think>" not in t and "</think>" not in t),
)
def test_format_target_round_trips(action, fmt, thought):
    if fmt == "action":
        thought = None
    p = parse_completion(format_target(action, fmt, thought), fmt, VALID)
    assert (p.action, p.well_formed, p.error) == (action, True, None)


# --- fuzzing: any string, never a crash -------------------------------------------------------------------------
PIECES = ["Action:", "Action: ", "action:", "<think>", "</think>", "\n", " ", "\t", ".", '"', "`", "'", "\r\n", *VALID]
near_misses = st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=12).map("".join)


def check_invariants(p: Parsed, valid):
    assert isinstance(p, Parsed)
    assert p.action is None or p.action in valid
    assert (p.action is None) == (p.error is not None)
    assert p.action is None or p.well_formed  # a matched action implies the format held
    assert p.well_formed == (p.text is not None)


@settings(max_examples=1000, deadline=None)
@given(completion=st.text() | near_misses, fmt=st.sampled_from(OUTPUT_FORMATS))
def test_parse_never_raises(completion, fmt):
    p = parse_completion(completion, fmt, VALID)
    check_invariants(p, VALID)
    assert canonical_action(completion, VALID) in [None, *VALID]


@settings(max_examples=300, deadline=None)
@given(
    action=st.sampled_from(VALID),
    before=st.sampled_from(["", " ", "\n", '"', "`", "'"]),
    after=st.sampled_from(["", " ", ".", "!", '"', "`", "'", ".\n", '".']),
    upper=st.booleans(),
)
def test_decorated_actions_always_match(action, before, after, upper):
    text = before + (action.upper() if upper else action) + after
    assert parse_completion(f"Action: {text}", "action", VALID).action == action


def test_huge_and_binary_inputs():
    huge = "Action: " + "x" * 1_000_000
    assert parse_completion(huge, "action", VALID) == Parsed(None, True, "not a valid action", "x" * 1_000_000)
    assert parse_completion("<think>" + "y" * 1_000_000 + f"</think>Action: {GO}", "think", VALID).action == GO
    punct = "Action: Do nothing" + '."' * 200_000  # alternating quotes and punctuation strip in one pass
    assert parse_completion(punct, "action", VALID).action == "Do nothing"
    junk = bytes(range(256)).decode("latin-1") * 100
    for fmt in OUTPUT_FORMATS:
        check_invariants(parse_completion(junk, fmt, VALID), VALID)
        check_invariants(parse_completion("\ud800Action: \x00", fmt, VALID), VALID)  # a lone surrogate
