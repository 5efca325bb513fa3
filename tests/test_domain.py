"""The domain file: what is read from it, and clear errors for broken files."""

import json

import pytest

from planner_rl.env.domain import DomainError, load_domain
from planner_rl.env.tasks import ASSETS

ACTIONS = ["move", "pick-up-item", "place-item", "pick-up-container", "place-container", "cook", "cut", "fry",
           "fill-pot", "boil-water", "add-to", "fill-bowl", "stack", "unstack", "wait"]  # fmt: skip


def test_packaged_domain():
    d = load_domain()
    assert [a.name for a in d.actions] == ACTIONS
    move = d.actions[0]
    assert move.params == ("p1", "s1", "s2") and move.param_types == ("player", "station", "station")
    add_to = next(a for a in d.actions if a.name == "add-to")
    assert add_to.params == ("c1", "i1", "m1", "p1", "s1")  # first appearance in the preconditions
    assert add_to.param_types == ("container", "item", "meal", "player", "station")
    fill_pot = next(a for a in d.actions if a.name == "fill-pot")
    assert "m1" not in fill_pot.params  # the water is created by the effect, not a parameter
    assert d.predicates["item_on"].descriptors == ("{0} is directly on top of {1}", "{1} has {0} directly on top of it")


def _write(tmp_path, edit):
    raw = json.loads((ASSETS / "domain" / "robotouille.json").read_text())
    edit(raw)
    path = tmp_path / "domain.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.pop("action_defs"), "missing field 'action_defs'"),
        (
            lambda r: r["action_defs"][0]["precons"][0].update(predicate="at"),
            r"action_defs\[0\].precons\[0\].predicate",
        ),
        (lambda r: r["action_defs"][0]["precons"][0].update(params=["p1"]), "takes 2 arguments"),
        (lambda r: r["action_defs"][0].update(language_description="Go {x}"), r"unknown parameters \['x'\]"),
        (lambda r: r["action_defs"][6]["sfx"][0].update(type="magic"), "unknown special effect 'magic'"),
        (lambda r: r["predicate_defs"][0].update(language_descriptors={}), "lacks a position"),
    ],
)
def test_broken_domain_files_name_the_field(tmp_path, edit, message):
    with pytest.raises(DomainError, match=message):
        load_domain(_write(tmp_path, edit))


def test_unreadable_domain_file(tmp_path):
    with pytest.raises(DomainError, match="cannot read the domain file"):
        load_domain(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(DomainError, match="not valid JSON"):
        load_domain(bad)
