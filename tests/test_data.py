"""The single-turn dataset: one example per expert-plan state, labels consistent with the expert and the parser,
disjoint splits, zero ambiguity with the default prompt, a working expert cache and label noise."""

import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from planner_rl import data as data_mod
from planner_rl.data import (
    ambiguity,
    build_dataset,
    check_disjoint,
    expert_trajectory,
    is_feedback_example,
    seed_list,
    self_moves,
    task_list,
)
from planner_rl.env.families import make_world, solve
from planner_rl.env.tasks import EVAL_SEEDS
from planner_rl.parsing import parse_completion
from planner_rl.prompts import PromptConfig

CONF = str((__import__("pathlib").Path(__file__).parents[1] / "conf").resolve())


def _cfg(*overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("data", overrides=["num_proc=1", "expert_cache=null", *overrides])


def test_seed_and_task_specs():
    assert seed_list("3-6") == [3, 4, 5, 6] and seed_list(7) == [7] and seed_list([1, 5]) == [1, 5]
    for bad in ["6-3", "x", "1-", [], [1, 1], [1, "2"], True, 1.5]:
        with pytest.raises(ValueError, match="seeds"):
            seed_list(bad, "env.train_seeds")
    assert len(task_list("all")) == 10 and task_list([3, "burger"]) == ["burger", "burger"]
    with pytest.raises(KeyError, match="unknown task"):
        task_list(["pizza"])
    with pytest.raises(ValueError, match=r"overlap on \[42\]"):
        check_disjoint([1, 42], list(EVAL_SEEDS))


@pytest.fixture(scope="module")
def small():
    cfg = _cfg("env.tasks=[cheese_sandwich,lettuce_sandwich]", "env.train_seeds=0-5", "env.test_seeds=[42,84]")
    return build_dataset(cfg)


def test_processes_build_the_same_splits(small):
    """Two processes, the instances of both splits in one pool handed out longest task first: the same examples in
    the same order as one process."""
    data, _ = small
    cfg = _cfg("env.tasks=[cheese_sandwich,lettuce_sandwich]", "env.train_seeds=0-5", "env.test_seeds=[42,84]")
    cfg.num_proc = 2
    pooled, _ = build_dataset(cfg)
    for split in ("train", "test"):
        assert pooled[split].to_list() == data[split].to_list()


def test_one_example_per_plan_state(small):
    data, report = small
    train, test = data["train"], data["test"]
    assert set(train["seed"]) == set(range(6)) and set(test["seed"]) == {42, 84}
    for split in (train, test):
        instances = {(ex["task"], ex["seed"]): ex["t_gt"] for ex in split}
        assert len(split) == sum(instances.values())  # steps 0..T-1 of every plan
        for ex in split:
            assert ex["expert_action"] in ex["optimal_actions"]
            assert set(ex["optimal_actions"]) <= set(ex["valid_actions"])
            assert len(ex["history"]) == ex["step"] < ex["t_gt"]
            assert [m["role"] for m in ex["prompt"]] == ["system", "user"]
            assert ex["label"] == ex["expert_action"] and not ex["label_corrupted"]
            assert parse_completion(ex["target"], "action", ex["valid_actions"]).action == ex["expert_action"]
    first = {(ex["task"], ex["seed"], ex["step"]): ex for ex in train}
    for (task, seed, step), ex in first.items():  # histories are the plan's prefixes
        if step:
            prev = first[(task, seed, step - 1)]
            assert ex["history"] == [*prev["history"], prev["expert_action"]]
    assert report["ambiguity"]["rate"] == 0.0 and report["examples"] == {"train": len(train), "test": len(test)}


def test_saved_dataset_loads_back(small, tmp_path):
    from datasets import load_from_disk

    data, _ = small
    data.save_to_disk(tmp_path / "d")
    back = load_from_disk(str(tmp_path / "d"))
    assert back["train"][3] == data["train"][3] and len(back["test"]) == len(data["test"])


def test_hidden_counters_and_ambiguity():
    """Robotouille's text alone repeats prompts along a plan (the board shows no cut count), with one expert action
    each on these plans; the default prompt gives every state its own prompt."""
    args = ("env.tasks=[lettuce_sandwich]", "env.train_seeds=0-3", "env.test_seeds=[42]")
    bare = build_dataset(_cfg(*args, "prompt.progress=false", "prompt.history=0"))[1]
    assert bare["ambiguity"]["prompts"] < sum(bare["examples"].values())
    assert bare["ambiguity"]["ambiguous"] == 0
    default = build_dataset(_cfg(*args))[1]
    assert default["ambiguity"]["prompts"] == sum(default["examples"].values()) and default["ambiguity"]["rate"] == 0
    two = [
        {"prompt": "p", "expert_action": "a"},
        {"prompt": "p", "expert_action": "b"},
        {"prompt": "q", "expert_action": "a"},
    ]
    assert ambiguity(two) == {"prompts": 2, "ambiguous": 1, "rate": 0.5}


def test_think_format_targets_parse():
    data, _ = build_dataset(_cfg("env.tasks=[burger]", "env.train_seeds=[1]", "env.test_seeds=[2]",
                                 "prompt.output_format=think"))  # fmt: skip
    for ex in data["train"]:
        assert ex["target"].startswith("<think>")
        assert parse_completion(ex["target"], "think", ex["valid_actions"]).action == ex["expert_action"]


def test_label_noise_corrupts_targets_reproducibly():
    args = ("env.tasks=[burger]", "env.train_seeds=0-3", "env.test_seeds=[9]")
    noisy = build_dataset(_cfg(*args, "label_noise=1.0"))[0]["train"]
    for ex in noisy:
        others = set(ex["valid_actions"]) - {ex["expert_action"]}
        assert ex["label_corrupted"] == bool(others)
        assert ex["label"] in (others or {ex["expert_action"]})
        assert ex["target"] == f"Action: {ex['label']}"
    half = build_dataset(_cfg(*args, "label_noise=0.5"))[0]["train"]
    again = build_dataset(_cfg(*args, "label_noise=0.5"))[0]["train"]
    assert half["label"] == again["label"] and 0 < sum(half["label_corrupted"]) < len(half)


def test_expert_cache_is_used(tmp_path, monkeypatch):
    first = expert_trajectory("lettuce_sandwich", 2, str(tmp_path))
    assert len(list(tmp_path.iterdir())) == 1

    def no_solve(*a, **k):
        raise AssertionError("solved again despite the cache")

    monkeypatch.setattr(data_mod, "solve", no_solve)
    assert expert_trajectory("lettuce_sandwich", 2, str(tmp_path)) == first
    next(tmp_path.iterdir()).write_text("{broken")  # a damaged entry is solved again
    monkeypatch.undo()
    assert expert_trajectory("lettuce_sandwich", 2, str(tmp_path)) == first


def test_cli_builds_and_refuses_overlapping_seeds(tmp_path):
    out = tmp_path / "ds"
    base = [
        sys.executable,
        "-m",
        "planner_rl.data",
        "env.tasks=[burger]",
        "env.test_seeds=[42]",
        f"expert_cache={tmp_path}/c",
    ]
    ok = subprocess.run([*base, "env.train_seeds=0-2", f"out_dir={out}"], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "ambiguity 0/" in ok.stdout and (out / "dataset_dict.json").exists()
    bad = subprocess.run(
        [*base, "env.train_seeds=40-45", f"out_dir={out}"], capture_output=True, text=True, cwd=tmp_path
    )
    assert bad.returncode == 2 and "overlap on [42]" in bad.stderr


def test_prompt_config_is_the_prompt_group():
    assert PromptConfig(**_cfg().prompt) == PromptConfig()


def test_grpo_seeds_make_a_split_of_their_own_layouts():
    data, report = build_dataset(_cfg("env.tasks=[burger]", "env.train_seeds=[1]", "env.test_seeds=[2]",
                                      "env.grpo_seeds=[3,4]"))  # fmt: skip
    assert sorted(set(data["grpo"]["seed"])) == [3, 4] and set(data["train"]["seed"]) == {1}
    assert report["examples"]["grpo"] == len(data["grpo"]) > 0
    assert "grpo" not in build_dataset(_cfg("env.tasks=[burger]", "env.train_seeds=[1]", "env.test_seeds=[2]"))[0]
    with pytest.raises(ValueError, match=r"env.grpo_seeds and env.test_seeds overlap on \[2\]"):
        build_dataset(_cfg("env.tasks=[burger]", "env.train_seeds=[1]", "env.test_seeds=[2]", "env.grpo_seeds=[2]"))


def test_enrich_seeds_add_the_layouts_whose_expert_plan_matches_to_the_train_split():
    args = ("env.tasks=[cheeseburger]", "env.train_seeds=[100]", "env.test_seeds=[101]", "prompt.history=0")
    data, report = build_dataset(_cfg(*args, "env.enrich_seeds=0-39", "env.enrich_action=Unstack"))
    parking = [s for s in range(40) if any(a.startswith("Unstack") for a in expert_trajectory("cheeseburger", s).plan)]
    assert 0 < len(parking) < 20  # some layouts park an item, most do not
    assert report["enrich"] == {"candidates": 40, "layouts": {"cheeseburger": parking}}
    seeds = data["train"]["seed"]
    assert list(dict.fromkeys(seeds)) == [100, *parking] and set(data["test"]["seed"]) == {101}
    plain = build_dataset(_cfg(*args))[0]["train"]
    assert data["train"].to_list()[: len(plain)] == plain.to_list()  # the same examples, more after them
    assert "enrich" not in build_dataset(_cfg(*args))[1]


@pytest.mark.parametrize("overrides, message", [
    (["env.enrich_seeds=5-9"], "env.enrich_seeds and env.enrich_action go together"),
    (["env.enrich_action=Unstack"], "env.enrich_seeds and env.enrich_action go together"),
    (["env.enrich_seeds=5-9", "env.enrich_action=' '"], "env.enrich_seeds and env.enrich_action go together"),
    (["env.enrich_seeds=[0,1]", "env.enrich_action=Unstack"], r"env.enrich_seeds and env.train_seeds overlap on \[1\]"),
    (["env.enrich_seeds=[2,5]", "env.enrich_action=Unstack"], r"env.enrich_seeds and env.test_seeds overlap on \[2\]"),
    (["env.enrich_seeds=[5]", "env.enrich_action=Juggle"], "env.enrich_action: no action .* starts with 'Juggle'"),
])  # fmt: skip
def test_enrich_config_errors_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_dataset(_cfg("env.tasks=[cheeseburger]", "env.train_seeds=[1]", "env.test_seeds=[2]", *overrides))


def test_detours_add_states_one_off_plan_action_away_labelled_by_the_replanned_expert():
    args = ("env.tasks=[cheeseburger]", "env.train_seeds=0-3", "env.test_seeds=[9]", "prompt.history=0")
    plain = build_dataset(_cfg(*args))[0]["train"]
    mixed, test = build_dataset(_cfg(*args, "prompt.detours=0.5"))[0].values()
    assert not any(test["detour"]) and not any(plain["detour"])  # test = the expert's own states
    off = [ex for ex in mixed if ex["detour"]]
    assert 0 < len(off) < len(plain) and len(mixed) == len(plain) + len(off)
    by_state = {(ex["seed"], ex["step"]): ex for ex in plain}
    plan_prompts = {ex["prompt"][1]["content"]: ex["expert_action"] for ex in plain}
    for ex in off:
        twin = by_state[(ex["seed"], ex["step"] - 1)]  # the plan state the detour left
        assert ex["detour"] in twin["valid_actions"] and ex["detour"] != twin["expert_action"]
        assert ex["history"] == [*twin["history"], ex["detour"]]
        # off the plan, or back on it (a move undone): then labelled as the plan labels it
        assert plan_prompts.get(ex["prompt"][1]["content"], ex["expert_action"]) == ex["expert_action"]
        world = make_world("cheeseburger", ex["seed"])
        state = world.initial_state
        for text in ex["history"]:
            state = world.step(state, next(a for a in world.valid_actions(state) if a.text == text))
        assert ex["valid_actions"] == [a.text for a in world.valid_actions(state)]
        assert ex["expert_action"] == ex["label"] == solve(world, state).texts[0]  # the expert replanned from here
        assert ex["expert_action"] in ex["optimal_actions"] and ex["target"] == f"Action: {ex['expert_action']}"
    assert sum(ex["prompt"][1]["content"] not in plan_prompts for ex in off) > len(off) / 2
    assert build_dataset(_cfg(*args, "prompt.detours=0.5"))[0]["train"]["prompt"] == mixed["prompt"]  # seeded
    with pytest.raises(ValueError, match=r"prompt\.detours must be in"):
        PromptConfig(detours=-0.1)


def test_feedback_examples_repeat_a_share_of_states_after_a_refused_answer():
    args = ("env.tasks=[cheeseburger]", "env.train_seeds=0-3", "env.test_seeds=[9]", "prompt.history=0")
    plain = build_dataset(_cfg(*args))[0]["train"]
    mixed, test = build_dataset(_cfg(*args, "prompt.feedback_examples=0.5"))[0].values()
    assert len(test) > 0 and not any("Feedback: " in ex["prompt"][1]["content"] for ex in test)  # expert states only
    shown = [ex for ex in mixed if "Feedback: " in ex["prompt"][1]["content"]]
    assert 0 < len(shown) < len(plain) and len(mixed) == len(plain) + len(shown)
    by_state = {(ex["seed"], ex["step"]): ex for ex in plain}
    for ex in shown:  # the same state, its expert action the target; the quoted answer is invalid there
        twin = by_state[(ex["seed"], ex["step"])]
        assert ex["target"] == twin["target"] and ex["valid_actions"] == twin["valid_actions"]
        quoted = ex["prompt"][1]["content"].split("Feedback: The action '")[1].split("'")[0]
        assert quoted not in ex["valid_actions"]
        assert (
            ex["prompt"][1]["content"].replace(ex["prompt"][1]["content"].split("\n\n")[-2] + "\n\n", "")
            == (twin["prompt"][1]["content"])
        )  # nothing else changes
    assert build_dataset(_cfg(*args, "prompt.feedback_examples=0.5"))[0]["train"]["prompt"] == mixed["prompt"]
    with pytest.raises(ValueError, match=r"prompt\.feedback_examples must be in"):
        PromptConfig(feedback_examples=1.5)


def test_feedback_self_moves_quote_a_move_to_the_robots_own_station():
    args = ("env.tasks=[cheeseburger]", "env.train_seeds=0-3", "env.test_seeds=[9]", "prompt.history=0",
            "prompt.feedback_examples=0.5")  # fmt: skip
    plan_only = build_dataset(_cfg(*args))[0]["train"]
    assert build_dataset(_cfg(*args, "prompt.feedback_self_moves=0"))[0]["train"]["prompt"] == plan_only["prompt"]
    mixed = build_dataset(_cfg(*args, "prompt.feedback_self_moves=0.5"))[0]["train"]
    by_state = {(ex["seed"], ex["step"]): ex for ex in mixed if not is_feedback_example(ex)}
    shown = [ex for ex in mixed if is_feedback_example(ex)]
    assert len(by_state) == len(mixed) - len(shown) == sum(not is_feedback_example(ex) for ex in plan_only)
    quoted = [ex["prompt"][1]["content"].split("Feedback: The action '")[1].split("'")[0] for ex in shown]
    own = [q for q in quoted if (m := re.fullmatch(r"Move (\S+) from (\S+) to (\S+)", q)) and m[2] == m[3]]
    assert 0.2 * len(quoted) < len(own) < 0.8 * len(quoted)  # about half; the rest quote the plan's other actions
    for ex, q in zip(shown, quoted, strict=True):  # the same state and target; only the refused answer is new
        twin = by_state[(ex["seed"], ex["step"])]
        assert q not in ex["valid_actions"] and ex["target"] == twin["target"]
        assert ex["prompt"][1]["content"].startswith(twin["prompt"][1]["content"].rsplit("\n\n", 1)[0])
    assert self_moves(["Move robot1 from table1 to sink2", "Move robot1 from table1 to stove1", "Do nothing"]) == [
        "Move robot1 from table1 to table1"
    ]
    assert self_moves(["(pick-up a)", "(stack a b)"]) == []  # other domains: nothing to quote
    assert build_dataset(_cfg(*args, "prompt.feedback_self_moves=0.5"))[0]["train"]["prompt"] == mixed["prompt"]
    with pytest.raises(ValueError, match=r"prompt\.feedback_self_moves must be in"):
        PromptConfig(feedback_self_moves=-0.5)
