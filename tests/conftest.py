import pytest

from planner_rl.env.domain import load_domain
from planner_rl.env.tasks import load_problem
from planner_rl.env.world import World


@pytest.fixture(scope="session")
def domain():
    return load_domain()


@pytest.fixture(scope="session")
def make_world(domain):
    cache = {}

    def make(task, seed=None):
        if (task, seed) not in cache:
            cache[(task, seed)] = World(load_problem(task, seed), domain)
        return cache[(task, seed)]

    return make
