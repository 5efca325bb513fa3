"""Structured-config schemas: every conf/ group is checked against a dataclass at start-up, so a misspelt key, a
wrong type or an unknown option fails before any work, naming the key.

Groups with one shape use the module's own dataclass (PromptConfig in prompts.py, ...); groups whose options are
swapped by `_target_` (rollout, trainer, logger) register one schema per option, which the option's yaml names
first in its defaults list (e.g. conf/rollout/hf.yaml: `defaults: [hf_schema, _self_]`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from planner_rl.eval_protocol import EvalConfig
from planner_rl.grpo import GRPOConfig
from planner_rl.logger import NoLoggerConfig, WandbConfig
from planner_rl.model import ModelConfig
from planner_rl.prompts import PromptConfig
from planner_rl.rewards import RewardConfig
from planner_rl.rollout.hf import HFRolloutConfig
from planner_rl.rollout.vllm import VLLMRolloutConfig
from planner_rl.sft import SFTConfig
from planner_rl.trainer.deepspeed import DeepSpeedTrainerConfig
from planner_rl.trainer.torch import TorchTrainerConfig


@dataclass
class EnvConfig:
    """conf/env/*.yaml (planner_rl/data.py reads these)."""

    tasks: Any = "all"  # `all`, a task name / number / problem-file path, or a list of them
    train_seeds: Any = "1000-1099"  # layouts of the training data: a list of ints or a range "a-b"
    test_seeds: Any = field(default_factory=lambda: [42, 84, 126, 168, 210, 252, 294, 336, 378, 420])
    grpo_seeds: Any = None  # layouts GRPO draws its prompts from; null: train_seeds (the SFT data, the paper's)
    enrich_seeds: Any = None  # candidate extra SFT layouts: those whose expert plan has an action starting with
    enrich_action: str | None = None  # this text join the train split; null: none (data.enrich_layouts)


@dataclass
class PathsConfig:
    """conf/paths/default.yaml."""

    cache_dir: str = MISSING  # built models and solved expert plans
    output_dir: str = MISSING  # this run's directory (Hydra's)


@dataclass
class TrainConfig:
    """conf/train.yaml: the main job."""

    env: EnvConfig = field(default_factory=EnvConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rollout: Any = MISSING
    trainer: Any = MISSING
    logger: Any = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0  # seeds data order, sampling and initialisation of the GRPO stage
    name: str = "train"  # the run's name (W&B, console)
    num_proc: int = 0  # processes solving expert plans; 0 = one per CPU core
    label_noise: float = 0.0  # [0, 1]: probability that an SFT target's action is corrupted
    label_noise_seed: int = 0
    expert_cache: str | None = None  # solved plans; null: no cache
    cleanup: bool = False  # at the end, delete the weights (checkpoints, SFT model); sweeps set it
    sft_cache: str | None = None  # a dir: runs whose SFT stage has the same inputs share it (sweeps); null: off


@dataclass
class EvaluateConfig:
    """conf/evaluate.yaml: `python -m planner_rl.evaluate`, a saved model's multi-turn evaluation alone."""

    env: EnvConfig = field(default_factory=EnvConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rollout: Any = MISSING
    logger: Any = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    name: str = "evaluate"
    expert_cache: str | None = None


class ConfigError(ValueError):
    """A config value that its schema's checks refuse (the message names the key)."""


def typed(cfg: DictConfig, key: str):
    """cfg[key] as its schema's dataclass, whose __post_init__ checks the values."""
    try:
        return OmegaConf.to_object(cfg[key])
    except ValueError as e:  # omegaconf wraps the dataclass's own error; keep its message, which names the key
        raise ConfigError(str(getattr(e, "__cause__", None) or e).split("\n")[0]) from e


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(group="rollout", name="hf_schema", node=HFRolloutConfig)
    cs.store(group="rollout", name="vllm_schema", node=VLLMRolloutConfig)
    cs.store(group="trainer", name="torch_schema", node=TorchTrainerConfig)
    cs.store(group="trainer", name="deepspeed_schema", node=DeepSpeedTrainerConfig)
    cs.store(group="logger", name="none_schema", node=NoLoggerConfig)
    cs.store(group="logger", name="wandb_schema", node=WandbConfig)
