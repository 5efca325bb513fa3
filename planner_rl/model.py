"""Models: the embedded `tiny` Qwen3 model with its word-level tokenizer, and real checkpoints (conf/model/*.yaml).

    python -m planner_rl.model                      # build (once) and load the tiny model; print path, sizes
    python -m planner_rl.model model=tiny seed=1    # another seed; any ModelConfig field as key=value
    python -m planner_rl.model model=qwen2_5_1_5b model.path=/local/dir

No downloads are possible on the project's machines, so `tiny` is built here: a randomly initialised
`Qwen3ForCausalLM` (seeded, bitwise reproducible) and a word-level tokenizer whose vocabulary comes from the domain
file and from prompts rendered by `planner_rl.prompts`. It is written once with `save_pretrained` into
`<cache_dir>/tiny-<hash>/` (the hash covers the sizes, the seed and the vocabulary) and then loaded with
`AutoModelForCausalLM` / `AutoTokenizer`, exactly like any checkpoint.

Tokens: each word with or without one leading space (`"robot"`, `" robot"`), each object name (`table12`,
`" patty2"`: a kind and its number, for numbers up to `MAX_NAME_NUMBER`) as one token, other digits one each,
punctuation and whitespace one character each, and the Qwen special tokens. With `name_tokens=false` names are
spelt kind then digits (`table12` is `table`, `1`, `2`), the build of sessions before the learning study. A word the
vocabulary lacks is spelt from known pieces and single letters, so only non-ASCII characters can be `<unk>`. The
decoder only concatenates, so decoding is lossless for any text without unknown characters (tests/test_model.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import string
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from planner_rl.integrity import MANIFEST, CheckpointError, check_manifest, write_manifest

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "model"
BUILD_VERSION = 2  # bump when the build changes in a way the hash does not see (cached builds are then redone)
DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

PAD, IM_START, IM_END, THINK_OPEN, THINK_CLOSE, UNK = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<unk>",
)
SPECIAL_TOKENS = (PAD, IM_START, IM_END, THINK_OPEN, THINK_CLOSE, UNK)  # ids 0..5, in this order
# A word (letters) or one other character, each optionally after one space; any other whitespace on its own.
PRE_TOKENIZE = r" ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]|\s"
# The same, with a word's trailing digits kept on it: an object name (`table12`) is one piece, one token when the
# vocabulary has it (every kind with the numbers 1..MAX_NAME_NUMBER), else the longest known prefix and its digits.
PRE_TOKENIZE_NAMES = r" ?[A-Za-z]+[0-9]*| ?[0-9]| ?[^\sA-Za-z0-9]|\s"
MAX_NAME_NUMBER = 20
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
CHAT_WORDS = ("system", "user", "assistant", "special")  # roles; `special` names effects without an action schema


class ModelLoadError(RuntimeError):
    """A model path that cannot be loaded; the message names the path and what to do."""


@dataclass  # not frozen: it is also the structured-config schema of its conf/ group
class ModelConfig:
    """conf/model/*.yaml. Real checkpoints use the first five fields; the rest describe the tiny model."""

    name: str = "tiny"
    path: str | None = None  # local dir or hub id; None for tiny (built into cache_dir)
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2
    local_files_only: bool = True  # never try the network (as with HF_HUB_OFFLINE=1); False: download if missing
    cache_dir: str | None = None  # None: $PLANNER_RL_CACHE/models or ~/.cache/planner_rl/models
    seed: int = 0
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    name_tokens: bool = True  # an object's name (`table3`) is one token; false: kind and digits (`table`, `3`)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {list(DTYPES)}, got {self.dtype!r}")


DEFAULT_MODEL = ModelConfig()


def model_config(cfg: ModelConfig | dict | object) -> ModelConfig:
    """A ModelConfig from itself, a dict or a DictConfig (an unknown key raises TypeError naming it)."""
    if isinstance(cfg, ModelConfig):
        return cfg
    if not isinstance(cfg, dict):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    return ModelConfig(**cfg)


# --- vocabulary ---------------------------------------------------------------------------------------------------
def _pre_tokenizer(name_tokens: bool = False) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Split(Regex(PRE_TOKENIZE_NAMES if name_tokens else PRE_TOKENIZE), behavior="isolated")


def project_texts(seeds: tuple[int | None, ...] = (None, 0, 1), steps: int = 40) -> list[str]:
    """Text the project shows a model: the domain file's words, system prompts, and user prompts (all sections
    on) along seeded random walks of every synchronous task, with invalid-action feedback."""
    from planner_rl.env.cooking import INVALID_FEEDBACK, make_world
    from planner_rl.env.domain import KINDS, load_domain
    from planner_rl.env.tasks import synchronous_tasks
    from planner_rl.parsing import OUTPUT_FORMATS, format_target
    from planner_rl.prompts import OBSERVATIONS, PromptConfig, build_messages

    domain = load_domain()
    texts = [*domain.object_types, *KINDS, *(k for kinds in KINDS.values() for k in kinds), *CHAT_WORDS]
    texts += [" ".join(p.descriptors) for p in domain.predicates.values()]  # not the names: prompts never show them
    texts += [a.name + " " + a.template for a in domain.actions]
    texts = [re.sub(r"\{\w*\}", " ", t).replace("_", " ") for t in texts]  # no placeholders; snake_case is 2 words
    texts += [t.capitalize() for t in domain.object_types]  # observation block headers ("Station table1:")
    configs = [PromptConfig(output_format=f, history=-1, observation=o) for f in OUTPUT_FORMATS for o in OBSERVATIONS]
    for task in synchronous_tasks():
        for seed in seeds:
            world, rng = make_world(task.name, seed), random.Random(f"{task.name}/{seed}")
            state, history = world.initial_state, []
            for step in range(steps):
                valid = world.valid_actions(state)
                feedback = INVALID_FEEDBACK.format(valid[0].text) if step % 10 == 0 else None
                for cfg in configs:
                    texts += [m["content"] for m in build_messages(world, state, history, cfg, feedback)]
                texts += [format_target(valid[-1].text, f) for f in OUTPUT_FORMATS]
                if world.is_goal(state):
                    break
                acting = [a for a in valid if a.schema != "move"]  # moves dominate; favour cut/cook/stack
                action = rng.choice(acting if acting and rng.random() < 0.7 else valid)
                state, history = world.step(state, action), [*history, action.text]
    return texts


@cache
def project_vocabulary(name_tokens: bool = False) -> tuple[str, ...]:
    """Sorted tokens: every piece of `project_texts()`, each word also capitalised or not and with or without a
    leading space, plus every printable ASCII character with and without a leading space; with `name_tokens`, also
    every kind that a name in those texts starts with (`patty` of `patty1`) numbered 1..MAX_NAME_NUMBER, with and
    without a leading space."""
    texts = project_texts()
    pre = _pre_tokenizer()
    pieces = {piece for text in texts for piece, _ in pre.pre_tokenize_str(text)}
    words = {p.strip() for p in pieces if p.strip().isalpha()}
    words |= {w.lower() for w in words} | {w.capitalize() for w in words}
    chars = set(string.ascii_letters + string.digits + string.punctuation) | {" ", "\n", "\t"}
    tokens = pieces | words | {" " + w for w in words} | chars | {" " + c for c in chars if not c.isspace()}
    if name_tokens:
        kinds = {m for text in texts for m in re.findall(r"[a-z]+(?=[0-9])", text)}
        names = {f"{k}{n}" for k in kinds for n in range(1, MAX_NAME_NUMBER + 1)}
        tokens |= names | {" " + n for n in names}
    return tuple(sorted(tokens - set(SPECIAL_TOKENS)))


def build_tokenizer(
    vocabulary: tuple[str, ...] | None = None, max_length: int = 4096, name_tokens: bool = True
) -> PreTrainedTokenizerFast:
    """The word-level tokenizer (special tokens at ids 0-5, then `vocabulary`), with the chat template."""
    vocabulary = project_vocabulary(name_tokens) if vocabulary is None else vocabulary
    vocab = {tok: i for i, tok in enumerate((*SPECIAL_TOKENS, *vocabulary))}
    # WordPiece without a continuation prefix: a known word is one token (the longest match), an unseen one falls
    # back to known pieces and letters (" robots" -> " robot", "s"); only characters outside the vocabulary are <unk>.
    core = Tokenizer(
        models.WordPiece(vocab, unk_token=UNK, continuing_subword_prefix="", max_input_chars_per_word=10**4)
    )
    core.pre_tokenizer = _pre_tokenizer(name_tokens)
    core.decoder = decoders.Fuse()  # tokens carry their own spaces: decoding is concatenation
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[IM_START],
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
    )
    # The think tags are added tokens but not special: decoding with skip_special_tokens=True keeps them.
    tokenizer.add_tokens([THINK_OPEN, THINK_CLOSE])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def count_unknown(tokenizer: PreTrainedTokenizerBase, texts: list[str] | tuple[str, ...]) -> int:
    """How many `<unk>` tokens `texts` encode to (0 when the vocabulary covers them)."""
    unk = tokenizer.unk_token_id
    return sum(tokenizer.encode(t, add_special_tokens=False).count(unk) for t in texts)


# --- tiny model ---------------------------------------------------------------------------------------------------
_ARCH_FIELDS = ("seed", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "max_position_embeddings", "rope_theta", "name_tokens")  # fmt: skip


def cache_root(cfg: ModelConfig) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    if os.environ.get("PLANNER_RL_CACHE"):
        return Path(os.environ["PLANNER_RL_CACHE"]).expanduser() / "models"
    return Path.home() / ".cache" / "planner_rl" / "models"


def tiny_dir(cfg: ModelConfig) -> Path:
    """Where the tiny model of `cfg` lives: `<cache>/tiny-<hash of sizes, seed, vocabulary, BUILD_VERSION>`."""
    key = {"build": BUILD_VERSION, "vocab": project_vocabulary(cfg.name_tokens)}
    key |= {k: getattr(cfg, k) for k in _ARCH_FIELDS}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root(cfg) / f"tiny-{digest}"


def _tiny_model(cfg: ModelConfig, tokenizer: PreTrainedTokenizerFast) -> Qwen3ForCausalLM:
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": float(cfg.rope_theta)},
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        dtype=torch.float32,
    )
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def build_tiny(cfg: ModelConfig | dict | object = DEFAULT_MODEL) -> Path:
    """The directory of the tiny model of `cfg`, building it first if it is not cached. The build goes to a
    temporary sibling directory that is renamed into place, so concurrent builders never see half a model."""
    cfg = model_config(cfg)
    final = tiny_dir(cfg)
    if (final / "build.json").exists():
        try:
            check_manifest(final)
            return final
        except CheckpointError as e:  # a damaged (or pre-manifest) build: out of the way, and built again
            print(f"warning: {e}; building it again", file=sys.stderr)
            doomed = final.parent / f".{final.name}-damaged-{os.getpid()}"
            with contextlib.suppress(OSError):
                final.rename(doomed)
            shutil.rmtree(doomed, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        tokenizer = build_tokenizer(max_length=cfg.max_position_embeddings, name_tokens=cfg.name_tokens)
        model = _tiny_model(cfg, tokenizer)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        info = {**{k: getattr(cfg, k) for k in _ARCH_FIELDS}, "build": BUILD_VERSION}
        info |= {"parameters": model.num_parameters(), "vocab_size": len(tokenizer)}
        (tmp / "build.json").write_text(json.dumps(info, indent=1) + "\n")  # written last: marks a complete build
        for f in (tmp, *tmp.iterdir()):  # mkdtemp (and safetensors) make them private; the cache may be shared
            f.chmod(0o755 if f.is_dir() else 0o644)
        write_manifest(tmp)  # checked on every use: a damaged build is rebuilt, not loaded
        (tmp / MANIFEST).chmod(0o644)
        try:
            tmp.rename(final)
        except OSError:  # another builder renamed its (identical) build first
            if not (final / "build.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# --- loading ------------------------------------------------------------------------------------------------------
def _hub_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def resolve_path(cfg: ModelConfig) -> tuple[str, bool]:
    """(what to pass to from_pretrained, local_files_only) for `cfg`, or ModelLoadError if it cannot exist."""
    if cfg.path is None:
        if cfg.name != "tiny":
            raise ModelLoadError(f"model {cfg.name!r} has no path; set model.path=<local dir or hub id>")
        return str(build_tiny(cfg)), True
    path = str(cfg.path)
    local = Path(path).expanduser()
    if local.is_dir():
        return str(local), True
    if path.startswith(("/", ".", "~")) or path.count("/") != 1 or local.exists():
        raise ModelLoadError(
            f"model.path={path!r}: no such directory; point model.path at a saved checkpoint "
            "(a directory with config.json) or at a hub id such as Qwen/Qwen2.5-1.5B-Instruct"
        )
    from huggingface_hub import constants

    if _hub_cached(path):
        return path, True
    if cfg.local_files_only or constants.HF_HUB_OFFLINE:
        raise ModelLoadError(
            f"model.path={path!r} is not a local directory and not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
            f", and downloads are off (model.local_files_only=true or HF_HUB_OFFLINE=1). Run `huggingface-cli download "
            f"{path}` first, set model.path=/dir/with/the/checkpoint, or allow downloads: model.local_files_only=false"
        )
    return path, False


def load_model_and_tokenizer(cfg: ModelConfig | dict | object) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model (eval mode, on CPU) and tokenizer of `cfg`; builds the tiny model first if needed."""
    cfg = model_config(cfg)
    path, local_only = resolve_path(cfg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=DTYPES[cfg.dtype], attn_implementation=cfg.attn_implementation, local_files_only=local_only
        )
    except (OSError, ValueError, ImportError) as e:
        raise ModelLoadError(f"cannot load model.path={path!r}: {e}") from e
    return model.eval(), tokenizer


def main(argv: list[str]) -> None:
    if not all("=" in arg for arg in argv):
        sys.exit(f"usage: python -m planner_rl.model [model=NAME] [key=value ...]\n{__doc__}")
    overrides = dict(arg.split("=", 1) for arg in argv)
    name = overrides.pop("model", "tiny")
    base = OmegaConf.load(CONF_DIR / f"{name}.yaml")
    dotlist = [f"{k.removeprefix('model.')}={v}" for k, v in overrides.items()]
    cfg = model_config(OmegaConf.merge(base, OmegaConf.from_dotlist(dotlist)))
    try:
        model, tokenizer = load_model_and_tokenizer(cfg)
    except ModelLoadError as e:
        sys.exit(f"error: {e}")
    print(f"model:      {cfg.name}\npath:       {model.name_or_path}")
    print(f"parameters: {model.num_parameters():,}\nvocab size: {len(tokenizer):,}")


if __name__ == "__main__":
    main(sys.argv[1:])
