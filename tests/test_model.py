"""planner_rl.model: the tiny model's build and cache, its tokenizer on the project's own text, and load errors."""

import random
import threading
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from transformers import AutoModelForCausalLM, AutoTokenizer

from planner_rl import model as M
from planner_rl.env.cooking import INVALID_FEEDBACK, make_world
from planner_rl.env.tasks import synchronous_tasks, task_names
from planner_rl.parsing import OUTPUT_FORMATS, format_target, parse_completion
from planner_rl.prompts import PromptConfig, build_messages

CONF = Path(__file__).resolve().parents[1] / "conf"
QWEN = ("qwen2_5_0_5b", "qwen2_5_1_5b", "qwen2_5_3b", "qwen2_5_7b", "qwen2_5_14b")
PROMPT_CONFIGS = [
    PromptConfig(output_format=fmt, valid_actions=va, progress=pr, history=h)
    for fmt in OUTPUT_FORMATS
    for va, pr, h in [(True, True, 5), (False, False, 0), (True, False, -1), (False, True, 2)]
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return M.build_tiny(M.ModelConfig(cache_dir=str(tmp_path_factory.mktemp("models"))))


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)


def episodes(seeds=(7, 42), steps=25):
    """(messages, target) pairs along random walks of every task, on layout seeds the vocabulary never saw, with
    every prompt option and invalid-action feedback on some steps."""
    for task in synchronous_tasks():
        for seed in seeds:
            world, rng = make_world(task.name, seed), random.Random(seed * 100 + task.number)
            state, history = world.initial_state, []
            for step in range(steps):
                valid = world.valid_actions(state)
                action = rng.choice(valid)
                feedback = INVALID_FEEDBACK.format(rng.choice(valid).text.lower()) if step % 4 == 1 else None
                cfg = PROMPT_CONFIGS[step % len(PROMPT_CONFIGS)]
                yield (
                    build_messages(world, state, history, cfg, feedback),
                    format_target(action.text, cfg.output_format),
                )
                state, history = world.step(state, action), [*history, action.text]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [t for messages, target in episodes() for t in (*(m["content"] for m in messages), target)]


# --- build and cache ----------------------------------------------------------------------------------------------
def test_loads_like_any_checkpoint_and_size(tiny_dir, tiny):
    model, tokenizer = tiny
    assert tiny_dir.name.startswith("tiny-") and (tiny_dir / "build.json").exists()
    assert type(model).__name__ == "Qwen3ForCausalLM" and model.config.tie_word_embeddings
    assert 500_000 <= model.num_parameters() <= 5_000_000
    assert model.config.vocab_size == len(tokenizer) and model.config.eos_token_id == tokenizer.eos_token_id
    assert not list(tiny_dir.parent.glob(".tiny-*")), "the temporary build directory was left behind"


def test_load_model_and_tokenizer_from_hydra_config(tiny_dir, tiny):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(overrides=["+model=tiny", f"model.cache_dir={tiny_dir.parent}"])
    model, tokenizer = M.load_model_and_tokenizer(cfg.model)
    assert Path(model.name_or_path) == tiny_dir and not model.training
    assert tokenizer.get_vocab() == tiny[1].get_vocab()


def test_same_seed_same_weights_other_seed_different(tmp_path, tiny):
    state = tiny[0].state_dict()
    again = AutoModelForCausalLM.from_pretrained(M.build_tiny(M.ModelConfig(cache_dir=str(tmp_path)))).state_dict()
    assert state.keys() == again.keys() and all(torch.equal(state[k], again[k]) for k in state)
    other = M.build_tiny(M.ModelConfig(cache_dir=str(tmp_path), seed=1))
    assert other != M.tiny_dir(M.ModelConfig(cache_dir=str(tmp_path)))
    weights = AutoModelForCausalLM.from_pretrained(other).state_dict()
    assert not torch.equal(state["model.embed_tokens.weight"], weights["model.embed_tokens.weight"])


def test_rebuild_reuses_the_cache(tiny_dir, monkeypatch):
    cfg = M.ModelConfig(cache_dir=str(tiny_dir.parent))
    stamp = (tiny_dir / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(M, "_tiny_model", lambda *a: pytest.fail("rebuilt a cached model"))
    assert M.build_tiny(cfg) == tiny_dir
    assert (tiny_dir / "model.safetensors").stat().st_mtime_ns == stamp


def test_concurrent_builders_agree(tmp_path, monkeypatch):
    cfg, out = M.ModelConfig(cache_dir=str(tmp_path), num_hidden_layers=2), []
    barrier, build = threading.Barrier(3), M._tiny_model

    def racing_build(*args):  # all three pass the cache check before any of them renames its build into place
        barrier.wait(timeout=30)
        return build(*args)

    monkeypatch.setattr(M, "_tiny_model", racing_build)
    threads = [threading.Thread(target=lambda: out.append(M.build_tiny(cfg))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 3 and len(set(out)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [out[0].name]  # no temporary directories left
    AutoModelForCausalLM.from_pretrained(out[0])


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("PLANNER_RL_CACHE", str(tmp_path))
    assert M.cache_root(M.ModelConfig()) == tmp_path / "models"
    assert M.cache_root(M.ModelConfig(cache_dir="/x/y")) == Path("/x/y")
    assert M.tiny_dir(M.ModelConfig(seed=3)) != M.tiny_dir(M.ModelConfig(seed=4))
    assert M.tiny_dir(M.ModelConfig(hidden_size=64)) != M.tiny_dir(M.ModelConfig())
    assert M.tiny_dir(M.ModelConfig(dtype="bfloat16")) == M.tiny_dir(M.ModelConfig())  # a load-time option


# --- tokenizer ----------------------------------------------------------------------------------------------------
def test_prompts_and_targets_round_trip_without_unknowns(tiny, texts):
    tokenizer = tiny[1]
    assert len(texts) > 1000
    for text in texts:
        assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    assert M.count_unknown(tokenizer, texts) == 0


def test_every_ground_action_round_trips_on_its_own(tiny):
    """Every grounded action of every task, on the file's layout and on a layout the vocabulary never saw, encoded
    alone (not inside a prompt, where a neighbouring space or newline could hide a bad split)."""
    tokenizer, n = tiny[1], 0
    for task in task_names():
        for seed in (None, 7):
            texts = [a.text for a in make_world(task, seed).actions]
            encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]  # each text on its own
            for text, ids in zip(texts, encoded, strict=True):
                assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == text, (task, seed, text)
            n += len(texts)
    assert n > 10_000


def test_words_digits_and_unknowns(tiny):
    tokenizer = tiny[1]
    tokens = tokenizer.tokenize("Move robot1 from table12 to board3")
    assert tokens == ["Move", " robot1", " from", " table12", " to", " board3"]  # a name is one token
    # beyond MAX_NAME_NUMBER a name is its longest known prefix, then digits; still lossless
    assert tokenizer.tokenize(" table21 patty 7 x2") == [" table2", "1", " patty", " 7", " x", "2"]
    assert tokenizer.decode(tokenizer.encode(" table21 patty 7 x2")) == " table21 patty 7 x2"
    for word in ["bread", "lettuce", "patty", "chicken", "potato", "onion", "stove", "fryer", "sink", "pot", "bowl"]:
        assert len(tokenizer.tokenize(word)) == len(tokenizer.tokenize(" " + word)) == 1
    assert tokenizer.tokenize("Action: Valid Actions:\nGoal: Progress: Previous") == [
        "Action", ":", " Valid", " Actions", ":", "\n", "Goal", ":", " Progress", ":", " Previous"
    ]  # fmt: skip
    assert M.count_unknown(tokenizer, ["zzyzx 42 {}"]) == 0  # unseen words fall back to letters
    assert M.count_unknown(tokenizer, ["café ½"]) == 2


def test_digit_tokens_without_name_tokens(tmp_path):
    """`name_tokens=false`: the earlier build, names spelt kind then digits; a different cache directory."""
    cfg = M.ModelConfig(cache_dir=str(tmp_path), name_tokens=False)
    assert M.tiny_dir(cfg) != M.tiny_dir(M.ModelConfig(cache_dir=str(tmp_path)))
    tokenizer = M.build_tokenizer(name_tokens=False)
    tokens = tokenizer.tokenize("Move robot1 from table12 to board3")
    assert tokens == ["Move", " robot", "1", " from", " table", "1", "2", " to", " board", "3"]


def test_chat_template_and_target(tiny):
    tokenizer = tiny[1]
    messages, target = next(episodes(seeds=(3,), steps=1))
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    system, user = messages[0]["content"], messages[1]["content"]
    turns = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
    assert text == turns + "<|im_start|>assistant\n"
    assert not tokenizer.apply_chat_template(messages, tokenize=False).endswith("assistant\n")
    full = tokenizer.encode(text + target + tokenizer.eos_token, add_special_tokens=False)
    assert tokenizer.decode(full) == text + target + "<|im_end|>"
    assert full[-1] == tokenizer.eos_token_id and full.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3
    think = format_target("Do nothing", "think")
    ids = tokenizer.encode(think + "<|im_end|>", add_special_tokens=False)
    assert tokenizer.convert_ids_to_tokens(ids)[:3] == ["<think>", "\n", "</think>"]
    decoded = tokenizer.decode(ids, skip_special_tokens=True)  # keeps the think tags, drops <|im_end|>
    assert decoded == think and parse_completion(decoded, "think", ["Do nothing"]).valid


# --- model --------------------------------------------------------------------------------------------------------
def test_forward_and_generate(tiny):
    model, tokenizer = tiny
    messages, _ = next(episodes(seeds=(3,), steps=1))
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    batch = tokenizer([prompt, "Action: Do nothing"], return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad():
        logits = model(**batch).logits  # [B, T, V]
        assert logits.shape == (2, batch["input_ids"].shape[1], len(tokenizer))
        out = model.generate(**batch, max_new_tokens=5, do_sample=False)  # [B, T + new]
    assert out.shape[0] == 2 and batch["input_ids"].shape[1] < out.shape[1] <= batch["input_ids"].shape[1] + 5
    assert all(isinstance(t, str) for t in tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :]))


# --- configs and load errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", QWEN)
def test_qwen_configs(name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = M.model_config(compose(overrides=[f"+model={name}"]).model)
    assert cfg.name == name and cfg.path.startswith("Qwen/Qwen2.5-") and cfg.path.endswith("-Instruct")
    assert cfg.dtype in M.DTYPES and cfg.attn_implementation in ("sdpa", "eager", "flash_attention_2")


@pytest.mark.parametrize(
    "path", ["/nonexistent/planner_rl/checkpoint", "./no/such/dir", "planner-rl-tests/no-such-model-xyz"]
)
def test_missing_checkpoint_raises_model_load_error(path):
    cfg = M.ModelConfig(name="qwen2_5_0_5b", path=path, local_files_only=True)
    with pytest.raises(M.ModelLoadError, match=path.lstrip("./")) as err:
        M.load_model_and_tokenizer(cfg)
    assert "model.path" in str(err.value)


def test_directory_without_a_checkpoint_raises_model_load_error(tmp_path):
    with pytest.raises(M.ModelLoadError, match=str(tmp_path)):
        M.load_model_and_tokenizer(M.ModelConfig(name="qwen2_5_0_5b", path=str(tmp_path)))


def test_unknown_config_key_fails_with_its_name():
    with pytest.raises(TypeError, match="hiden_size"):
        M.model_config({"name": "tiny", "hiden_size": 64})
    with pytest.raises(ValueError, match="dtype"):
        M.ModelConfig(dtype="fp8")
