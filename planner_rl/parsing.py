"""Parse a model completion into one of the state's valid actions, and render SFT target completions.

Output formats (`fmt`, chosen by name; `OUTPUT_FORMATS`):

- `action`: the completion is one line `Action: <action>` and nothing else.
- `think`:  `<think>...</think>` then `Action: <action>`, e.g. "<think>\\nbread first\\n</think>\\nAction: Do nothing".

Structure rules (a completion that breaks one is malformed: `well_formed=False`, `action=None`):

- Whitespace around the whole completion is ignored; so is whitespace (or none, line breaks included) between
  `</think>` and `Action:` and between `Action:` and the action. The keyword is exactly `Action:` (its case and
  spelling are the format).
- `think`: exactly one `<think>` and one `</think>`, the completion opens with `<think>`; the thought may be empty
  and may mention `Action:`. Anything before `<think>` is malformed.
- After the think block (`think`) or in the whole completion (`action`): exactly one `Action:`, nothing before it,
  then the action on one line with nothing after it. So two `Action:` lines, an empty action, or trailing text
  are malformed. Callers pass decoded text without special tokens (no `<|im_end|>`).
- A non-string completion is malformed too. Parsing never raises on any completion and is linear in its length.

Matching (`canonical_action`): the action text and every valid action are normalised (`normalize_action`):
surrounding whitespace, quotes (`"`, `'`, backticks, typographic quotes) and trailing punctuation (`.,;:!?`) are
dropped, runs of whitespace become one space, and case is folded. The text is accepted only when exactly one
distinct valid action has the same normal form, and the result is that valid action's exact string. Zero matches
is "not a valid action"; two or more (e.g. valid actions that differ only by case) is "ambiguous", even if the
text equals one of them exactly. A well-formed completion whose action does not match is well-formed but invalid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from planner_rl.env.cooking import INVALID_FEEDBACK

OUTPUT_FORMATS = ("action", "think")
ACTION_PREFIX = "Action:"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

_QUOTES = "\"'`\u201c\u201d\u2018\u2019"  # " ' ` “ ” ‘ ’
_TRAILING_PUNCTUATION = ".,;:!?"
_WHITESPACE = " \t\n\r\f\v"


@dataclass(frozen=True)
class Parsed:
    """One completion, parsed: the matched valid action, whether the format held, and why not if it failed."""

    action: str | None  # the exact valid-action string matched; None when malformed, invalid or ambiguous
    well_formed: bool  # the completion has the format's structure (whatever its action text)
    error: str | None  # why `action` is None; None exactly when an action was matched
    text: str | None = None  # the raw action text after `Action:` (stripped), when the structure allowed reading it

    @property
    def valid(self) -> bool:
        return self.action is not None


def check_format(fmt: str) -> str:
    """`fmt` itself, or a ValueError naming the known formats (a config error, raised early)."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {OUTPUT_FORMATS}")
    return fmt


def normalize_action(text: str) -> str:
    """The normal form used for matching: no surrounding quotes/whitespace/trailing punctuation, one-space runs,
    case folded. `normalize_action(' "Pick up  Bread1." ') == "pick up bread1"`."""
    text = text.lstrip(_WHITESPACE + _QUOTES).rstrip(_WHITESPACE + _QUOTES + _TRAILING_PUNCTUATION)
    return " ".join(text.casefold().split())


def match_action(text: str, valid_actions: Sequence[str]) -> tuple[str | None, str | None]:
    """(the one valid action `text` stands for, None) or (None, the reason there is none)."""
    key = normalize_action(text)
    hits = sorted({a for a in valid_actions if normalize_action(a) == key})
    if len(hits) == 1:
        return hits[0], None
    if not hits:
        return None, "not a valid action"
    return None, f"ambiguous: matches {len(hits)} valid actions"


def canonical_action(text: str, valid_actions: Sequence[str]) -> str | None:
    """The exact valid-action string that `text` stands for, or None (no match, or more than one)."""
    if not isinstance(text, str):
        return None
    return match_action(text, valid_actions)[0]


def _read_action_line(body: str) -> tuple[str | None, str | None]:
    """(action text, None) if `body` is exactly one `Action: <text>` line (surrounding whitespace allowed),
    else (None, the structural error)."""
    body = body.strip()
    count = body.count(ACTION_PREFIX)
    if count == 0:
        return None, f"no '{ACTION_PREFIX}'"
    if count > 1:
        return None, f"more than one '{ACTION_PREFIX}'"
    if not body.startswith(ACTION_PREFIX):
        return None, f"text before '{ACTION_PREFIX}'"
    text = body[len(ACTION_PREFIX) :].strip()
    if not text:
        return None, "empty action"
    if len(text.splitlines()) > 1:
        return None, "text after the action line"
    return text, None


def _split_think(completion: str) -> tuple[str | None, str | None]:
    """(the part after `</think>`, None) if the completion opens with the one think block, else (None, error)."""
    body = completion.strip()
    n_open, n_close = body.count(THINK_OPEN), body.count(THINK_CLOSE)
    if n_open == 0 or n_close == 0:
        return None, f"no {THINK_OPEN}...{THINK_CLOSE} block"
    if n_open > 1 or n_close > 1:
        return None, f"more than one {THINK_OPEN} or {THINK_CLOSE}"
    if not body.startswith(THINK_OPEN):
        return None, f"text before {THINK_OPEN}"
    end = body.find(THINK_CLOSE)  # after THINK_OPEN: the open tag is at 0 and is not a prefix of the close tag
    return body[end + len(THINK_CLOSE) :], None


def parse_completion(completion: object, fmt: str, valid_actions: Sequence[str]) -> Parsed:
    """Parse `completion` in output format `fmt` and match its action against `valid_actions`. Never raises on the
    completion (an unknown `fmt` raises ValueError)."""
    check_format(fmt)
    if not isinstance(completion, str):
        return Parsed(None, False, "the completion is not a string")
    body: str | None = completion
    if fmt == "think":
        body, error = _split_think(completion)
        if body is None:
            return Parsed(None, False, error)
    text, error = _read_action_line(body)
    if text is None:
        return Parsed(None, False, error)
    action, error = match_action(text, valid_actions)
    return Parsed(action, True, error, text)


def format_target(action: str, fmt: str, thought: str | None = None) -> str:
    """The target completion for SFT: `Action: <action>`, or `<think>\\n<thought>\\n</think>\\nAction: <action>`
    (`<think>\\n</think>\\n...` when the thought is None or blank). `parse_completion` reads it back to `action`.
    Raises ValueError on a text that could not be read back: a thought with `fmt="action"`, a multi-line or empty
    action, `Action:` in the action, or think tags in the thought."""
    check_format(fmt)
    action = action.strip()
    if not action or len(action.splitlines()) > 1 or ACTION_PREFIX in action:
        raise ValueError(f"action {action!r} cannot be written as one '{ACTION_PREFIX}' line")
    line = f"{ACTION_PREFIX} {action}"
    if fmt == "action":
        if thought is not None:
            raise ValueError("a thought needs fmt='think'")
        return line
    thought = (thought or "").strip()
    if THINK_OPEN in thought or THINK_CLOSE in thought:
        raise ValueError(f"the thought must not contain {THINK_OPEN} or {THINK_CLOSE}")
    inner = f"\n{thought}\n" if thought else "\n"
    return f"{THINK_OPEN}{inner}{THINK_CLOSE}\n{line}"


SHOWN_CHARS = 120  # a refused answer is quoted in the next prompt up to this length, so prompts stay bounded


def refusal(completion: object, parsed: Parsed) -> str:
    """Robotouille's feedback for a refused answer, quoting its action text (or the whole answer when it has
    none), plus the parse error."""
    shown = parsed.text if parsed.text is not None else completion if isinstance(completion, str) else repr(completion)
    shown = " ".join(shown.split())  # one line: the feedback sits in the middle of the next prompt
    if len(shown) > SHOWN_CHARS:
        shown = shown[:SHOWN_CHARS] + "..."
    return f"{INVALID_FEEDBACK.format(shown)} Reason: {parsed.error}."
