"""Record Robotouille's own observations on its example files, for `tests/test_robotouille_examples.py`.

    git clone <Robotouille's repository> /tmp/rt   # portal-cornell/robotouille, MIT; this file imports its engine
    PYTHONHASHSEED=0 python tests/data/record_robotouille.py /tmp/rt tests/data/robotouille_examples.json [FILTER]

Runs Robotouille's engine (backend/, domain/, environments/env_generator/builder.py, robotouille/env.py) without its
renderer: gym and pddlgym, which those modules import but do not use here, are replaced by empty stand-ins. For
every example file (or those whose path contains FILTER): the initial observation, then WALKS seeded random walks
(env WALKS, default 2) of up to STEPS (40) actions (a non-move action with probability 0.6 when there is one), each
state's observation recorded as a SHA-1 prefix, once as is and once with its valid actions sorted (Robotouille's
order of several robots' actions depends on PYTHONHASHSEED), plus whether the goal holds after each action. Wildcard
kinds are drawn after `random.seed(0)`. The environment is a deep copy of the built state, as `RobotouilleEnv.reset`
makes (the built state's effect list is a shared default argument). A file's record is merged into the output as it
is done.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import sys
import types
from pathlib import Path

WALKS, STEPS, NON_MOVE = int(os.environ.get("WALKS", 2)), int(os.environ.get("STEPS", 40)), 0.6


def _engine(root: str):
    sys.path.insert(0, root)
    gym, spaces = types.ModuleType("gym"), types.ModuleType("gym.spaces")
    spaces.Text = type("Text", (), {"__init__": lambda self, *a, **k: None})
    gym.spaces, gym.Env = spaces, type("Env", (), {})
    pddlgym = types.ModuleType("pddlgym")
    pddlgym.__file__ = os.path.join(root, "pddlgym", "__init__.py")
    package = types.ModuleType("robotouille")  # its __init__ imports the pygame renderer
    package.__path__ = [os.path.join(root, "robotouille")]
    sys.modules.update({"gym": gym, "gym.spaces": spaces, "pddlgym": pddlgym, "robotouille": package})
    os.chdir(root)
    from environments.env_generator import builder
    from robotouille.env import LanguageSpace, build_state

    domain = json.loads(Path(root, "domain", "robotouille.json").read_text())

    def initial(rel: str):
        random.seed(0)
        env = builder.load_environment(rel)
        _, env = builder.build_problem(env)
        return copy.deepcopy(build_state(domain, env))

    return initial, LanguageSpace.state_to_language_description


def digest(observation: str, sort_actions: bool = False) -> str:
    if sort_actions:
        head, rest = observation.split("\n\nValid Actions:\n")
        actions, goal = rest.split("\n\nGoal: ")
        observation = f"{head}\n\nValid Actions:\n" + "\n".join(sorted(actions.split("\n"))) + f"\n\nGoal: {goal}"
    return hashlib.sha1(observation.encode()).hexdigest()[:16]


def record(initial, describe, rel: str) -> dict:
    state = initial(rel)
    out = {"players": len(state.get_players()), "initial_observation": describe(state), "walks": []}
    for w in range(WALKS):
        rng = random.Random(1000 * w + 7)
        s = initial(rel)
        walk = {"actions": [], "obs_sha1": [], "sorted_sha1": [], "done": []}
        for _ in range(STEPS):
            text = describe(s)
            walk["obs_sha1"].append(digest(text))
            walk["sorted_sha1"].append(digest(text, True))
            actions, strings = s.get_valid_actions_and_str()
            other = [k for k, a in enumerate(strings) if not a.startswith("Move") and a != "Do nothing"]
            k = rng.choice(other) if other and rng.random() < NON_MOVE else rng.randrange(len(strings))
            walk["actions"].append(strings[k])
            done = bool(s.step([actions[k]]))
            walk["done"].append(done)
            if done:
                break
        text = describe(s)
        walk["obs_sha1"].append(digest(text))
        walk["sorted_sha1"].append(digest(text, True))
        out["walks"].append(walk)
    return out


def main() -> None:
    root, dest = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    pick = sys.argv[3] if len(sys.argv) > 3 else ""
    initial, describe = _engine(root)
    examples = Path(root, "environments", "env_generator", "examples")
    for path in sorted(examples.rglob("*.json")):
        rel = str(path.relative_to(examples))
        if pick not in rel:
            continue
        data = json.loads(Path(dest).read_text()) if os.path.exists(dest) else {"files": {}}
        data["files"][rel] = record(initial, describe, rel)
        Path(dest).write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")
        print(rel, [len(w["actions"]) for w in data["files"][rel]["walks"]], flush=True)


if __name__ == "__main__":
    main()
