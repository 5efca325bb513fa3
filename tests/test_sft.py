"""SFT: the schedule, the loss and the batching against hand-worked numbers; a tiny model that memorises one plan;
the checkpoint loads back like any model; the command line runs end to end."""

import math
import random
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from planner_rl.data import build_examples
from planner_rl.model import ModelConfig, load_model_and_tokenizer
from planner_rl.prompts import PromptConfig
from planner_rl.sft import IGNORE, SFTConfig, completion_loss, encode_example, length_batches, lr_factor, train_sft


def test_lr_factor_by_hand():
    # 10 steps, 2 of warmup: 1/2, 2/2, then cosine over the 8 remaining steps: 0.5 * (1 + cos(pi * (s - 2) / 8)).
    assert [lr_factor(s, 10, 2, "cosine") for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert lr_factor(6, 10, 2, "cosine") == pytest.approx(0.5)
    assert lr_factor(9, 10, 2, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))  # 0.0381
    assert lr_factor(6, 10, 2, "linear") == pytest.approx(0.5) and lr_factor(9, 10, 2, "linear") == pytest.approx(1 / 8)
    assert lr_factor(9, 10, 2, "constant") == 1.0 and lr_factor(0, 10, 0, "cosine") == 1.0


def test_completion_loss_counts_labelled_tokens_only():
    logits = torch.zeros(1, 4, 5)  # uniform over 5 tokens: every labelled position costs ln 5
    logits[0, 1, 3] = 100.0  # position 1 predicts token 3 (label at position 2) with certainty: costs 0
    labels = torch.tensor([[IGNORE, 2, 3, IGNORE]])  # targets at positions 1 and 2, predicted from 0 and 1
    assert completion_loss(logits, labels).item() == pytest.approx((math.log(5) + 0.0) / 2)


def test_length_batches_cover_everything_once_and_group_lengths():
    lengths = [random.Random(1).randrange(10, 1000) for _ in range(203)]
    batches = length_batches(lengths, 8, random.Random(0), pool=5)
    assert sorted(i for b in batches for i in b) == list(range(203))
    assert all(1 <= len(b) <= 8 for b in batches)
    assert batches == length_batches(lengths, 8, random.Random(0), pool=5)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 100  # vs ~800 for random batches of 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_model_and_tokenizer(ModelConfig(cache_dir=str(tmp_path_factory.mktemp("models"))))


def test_encode_example_labels_the_answer_only(tiny):
    _, tok = tiny
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Goal: x"}]
    ids, labels = encode_example(tok, prompt, "Action: Do nothing")
    answer = [t for t in labels if t != IGNORE]
    assert len(ids) == len(labels) and labels[: len(ids) - len(answer)] == [IGNORE] * (len(ids) - len(answer))
    assert tok.decode(answer) == "Action: Do nothing<|im_end|>"
    assert tok.decode(ids[: len(ids) - len(answer)]).endswith("<|im_start|>assistant\n")


def test_tiny_model_learns_one_plan(tiny, tmp_path):
    """The whole chain learns: 24 steps on the 8 states of one burger plan (each repeated 8 times per epoch), after
    which the loss has halved and greedy decoding gives well-formed actions."""
    model, tok = tiny
    examples = build_examples(["burger"], [0], PromptConfig(history=0), {"num_proc": 1})
    data = {"train": examples * 8, "test": examples}
    cfg = SFTConfig(epochs=3, batch_size=8, lr=5e-3, warmup_ratio=0.0, schedule="constant", eval_examples=0)
    records = []
    torch.manual_seed(0)
    metrics = train_sft(model, tok, data, cfg, "action", tmp_path, records.append)
    losses = [r["loss/sft"] for r in records if "loss/sft" in r]
    assert len(losses) == 24 and losses[-1] < 0.5 * losses[0]
    assert metrics["eval/sft_format_rate"] == 1.0 and metrics["eval/sft_loss"] < 0.5 * losses[0]
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    x = torch.tensor([encode_example(tok, examples[0]["prompt"], examples[0]["target"])[0]])
    assert torch.equal(back(x).logits, model.eval()(x).logits)


def test_cli_runs(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "planner_rl.sft", "env.tasks=[cheese_sandwich]", "env.train_seeds=[0]",
         "env.test_seeds=[42]", "sft.epochs=1", "sft.eval_examples=4", f"model.cache_dir={tmp_path}/m",
         f"expert_cache={tmp_path}/e", f"hydra.run.dir={tmp_path}/run"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "run" / "sft" / "final" / "config.json").exists()
    assert "eval/sft_accuracy" in (tmp_path / "run" / "metrics.jsonl").read_text()
    bad = subprocess.run([sys.executable, "-m", "planner_rl.sft", "sft.schedule=step", f"hydra.run.dir={tmp_path}/r2"],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "sft.schedule" in bad.stderr


def test_answer_loss_equals_the_full_forward_loss():
    """The head run at answer positions only gives completion_loss of the full logits (padding, ragged answers)."""
    from planner_rl.model import ModelConfig, load_model_and_tokenizer
    from planner_rl.sft import answer_loss

    model, _ = load_model_and_tokenizer(ModelConfig())
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 500, (3, 40), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    labels = torch.full_like(ids, IGNORE)
    labels[0, 20:35], labels[1, 22:30], labels[2, 38:] = ids[0, 20:35], ids[1, 22:30], ids[2, 38:]
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    full = completion_loss(model(input_ids=ids, attention_mask=mask).logits, labels)
    assert answer_loss(model, batch).item() == pytest.approx(full.item(), rel=1e-5)


def test_prompt_targets_by_hand():
    """The prompt loss predicts each prompt token from the one before it: not the answer, the padding, nor the first
    answer token (that is the answer loss's)."""
    from planner_rl.sft import prompt_targets

    ids = torch.tensor([[5, 6, 7, 8, 9, 0], [5, 6, 7, 8, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]])
    labels = torch.tensor([[IGNORE, IGNORE, IGNORE, 8, 9, IGNORE], [IGNORE, IGNORE, 7, 8, IGNORE, IGNORE]])
    got = prompt_targets({"input_ids": ids, "attention_mask": mask, "labels": labels})
    assert got.tolist() == [[6, 7, IGNORE, IGNORE, IGNORE], [6, IGNORE, IGNORE, IGNORE, IGNORE]]


def test_prompt_loss_equals_the_full_forward_losses():
    """sft_losses' prompt term is the mean next-token loss over the prompt positions of the full logits, computed
    independently here; prompt_loss=0 trains on the answer alone (the same loss as before the option)."""
    from planner_rl.model import ModelConfig, load_model_and_tokenizer
    from planner_rl.sft import answer_loss, sft_losses

    model, _ = load_model_and_tokenizer(ModelConfig())
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(10, 500, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    labels = torch.full_like(ids, IGNORE)
    labels[0, 8:], labels[1, 6:9] = ids[0, 8:], ids[1, 6:9]
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
    prompt_terms = [-logp[r, t, ids[r, t + 1]] for r, last in ((0, 7), (1, 5)) for t in range(last)]
    answer_terms = [-logp[r, t - 1, ids[r, t]] for r, span in ((0, range(8, 12)), (1, range(6, 9))) for t in span]
    answer, prompt = sft_losses(model, batch, with_prompt=True)
    assert prompt.item() == pytest.approx(torch.stack(prompt_terms).mean().item(), rel=1e-5)
    assert answer.item() == pytest.approx(torch.stack(answer_terms).mean().item(), rel=1e-5)
    mixed = answer_loss(model, batch, prompt_weight=0.5).item()
    assert mixed == pytest.approx(answer.item() + 0.5 * prompt.item(), rel=1e-5)
    assert answer_loss(model, batch).item() == pytest.approx(answer.item(), rel=1e-5)
    with pytest.raises(ValueError, match=r"sft\.prompt_loss"):
        SFTConfig(prompt_loss=-1.0)
