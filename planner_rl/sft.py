"""SFT warm start: next-token cross-entropy on the assistant's answer only, then single-step accuracy on test states.

    python -m planner_rl.sft                                           # tiny model, all tasks (conf/sft.yaml)
    python -m planner_rl.sft env.tasks=[double_cheeseburger] sft.epochs=5 sft.lr=1e-3
    python -m planner_rl.sft data_dir=data/robotouille model=qwen2_5_0_5b sft.lr=1e-5

Each example is (chat prompt through the tokenizer's template, target = `Action: <label>` + end of turn); only the
target's tokens carry loss. Batches group examples of similar length (less padding), AdamW with a warmup then
cosine/linear/constant schedule, gradient clipping. After every epoch: loss on the test split and single-step
accuracy of greedy decoding (`eval/sft_accuracy`: the parsed action equals the expert's; `eval/sft_optimal_rate`:
it begins some optimal plan; `sft.decoding=valid_actions`: the most likely valid action instead of free text).
The final model is saved with `save_pretrained` in `<run dir>/sft/final`.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from planner_rl.parsing import parse_completion
from planner_rl.progress import Progress
from planner_rl.rollout import check_decoding
from planner_rl.rollout.hf import answer_ids, encode_prompt, generate, stop_ids
from planner_rl.rollout.restricted import answer_choices, choose

IGNORE = -100  # label of tokens without loss (prompt, padding)


@dataclass  # not frozen: it is also the structured-config schema of its conf/ group
class SFTConfig:
    """conf/sft/default.yaml."""

    epochs: int = 3
    batch_size: int = 8  # sequences per optimizer step
    lr: float = 1e-3  # peak learning rate
    schedule: str = "cosine"  # cosine | linear | constant, after warmup
    warmup_ratio: float = 0.05  # fraction of all steps spent warming up linearly from 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    eval_examples: int = 256  # test examples decoded greedily per evaluation (0 = all)
    eval_batch_size: int = 32
    max_new_tokens: int = 24  # per evaluation answer; an action is ~12 tokens
    seed: int = 0
    decoding: str = "free"  # free | valid_actions: the evaluation's answer is the most likely valid action
    prompt_loss: float = 0.0  # weight of the next-token loss on the prompt's tokens beside the answer (0: answer only)

    def __post_init__(self) -> None:
        check_decoding(self.decoding, "sft.decoding")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"sft.schedule must be cosine, linear or constant, got {self.schedule!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("sft.epochs must be >= 0, sft.batch_size >= 1 and sft.lr > 0")
        if self.prompt_loss < 0:
            raise ValueError(f"sft.prompt_loss must be >= 0, got {self.prompt_loss!r}")


# --- pure pieces ---------------------------------------------------------------------------------------------------
def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based) of `total`."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)  # 0 at the end of warmup, -> 1 at the last step
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def completion_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the tokens with a label; logits [B, T, V] predict labels [B, T] shifted by one."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE)


def answer_loss(model, batch: dict[str, torch.Tensor], prompt_weight: float = 0.0) -> torch.Tensor:
    """`completion_loss` of `model` on `batch`, with the output head run only where a label is predicted.

    The loss needs the logits of the answer tokens alone (about 12 of a prompt's 150-900 positions), so the decoder's
    hidden states are gathered there first: the same loss (to float rounding), a vocabulary-sized matrix product
    fewer per prompt token. Models without a separate decoder and head fall back to the full forward.
    `prompt_weight` > 0 adds that weight times the mean next-token loss on the prompt's tokens (`prompt_loss`)."""
    return weighted(sft_losses(model, batch, with_prompt=prompt_weight > 0), prompt_weight)


def weighted(losses: tuple[torch.Tensor, ...], prompt_weight: float) -> torch.Tensor:
    """The training loss from `sft_losses`' output: the answer's, plus `prompt_weight` times the prompt's if present."""
    return losses[0] + prompt_weight * losses[1] if len(losses) > 1 else losses[0]


def prompt_targets(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, T-1] next-token targets inside the prompt (the token after each prompt position that is itself a prompt
    token), IGNORE at the answer, the padding and the position before the answer's first token."""
    nxt = batch["input_ids"][:, 1:]
    in_prompt = (batch["labels"][:, 1:] == IGNORE) & (batch["attention_mask"][:, 1:] == 1)
    return torch.where(in_prompt, nxt, torch.full_like(nxt, IGNORE))


def sft_losses(model, batch: dict[str, torch.Tensor], with_prompt: bool = False) -> tuple[torch.Tensor, ...]:
    """(answer loss,) or (answer loss, prompt loss): mean cross-entropies, one forward pass (see `answer_loss`)."""
    targets = (batch["labels"][:, 1:], prompt_targets(batch)) if with_prompt else (batch["labels"][:, 1:],)
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    if decoder is None or head is None or getattr(model.config, "final_logit_softcapping", None):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        return tuple(F.cross_entropy(logits.flatten(0, 1).float(), t.flatten(), ignore_index=IGNORE) for t in targets)
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state[:, :-1]
    # the head only at the [N, H] positions with a target
    return tuple(F.cross_entropy(head(hidden[t != IGNORE]).float(), t[t != IGNORE]) for t in targets)


def length_batches(lengths: list[int], batch_size: int, rng: random.Random, pool: int = 50) -> list[list[int]]:
    """Index batches of similar lengths: shuffle, sort within pools of `pool` batches, shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * pool
    batches = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def encode_example(tokenizer, prompt: list[dict[str, str]], target: str) -> tuple[list[int], list[int]]:
    """(input ids, labels): the chat prompt then the target and an end-of-turn token; labels only on the latter."""
    prompt_ids = encode_prompt(tokenizer, prompt)
    answer = answer_ids(tokenizer, target)
    return prompt_ids + answer, [IGNORE] * len(prompt_ids) + answer


def collate(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids, attention_mask and labels, all [B, T]."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (x, y) in enumerate(rows):
        ids[r, : len(x)], labels[r, : len(y)], mask[r, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# --- evaluation ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def single_step_accuracy(
    model, tokenizer, examples, fmt: str, cfg: SFTConfig, decoding: str | None = None
) -> dict[str, float]:
    """Greedy answers on test states: how often the parsed action is the expert's, optimal, valid, well formed.
    `decoding` (default `cfg.decoding`): free generation, or valid_actions (the most likely valid action's answer,
    planner_rl/rollout/restricted.py; then every answer is valid and well formed)."""
    n = len(examples) if cfg.eval_examples <= 0 else min(cfg.eval_examples, len(examples))
    picked = [examples[i] for i in sorted(random.Random(cfg.seed).sample(range(len(examples)), n))]
    prompts = [encode_prompt(tokenizer, ex["prompt"]) for ex in picked]
    if check_decoding(decoding or cfg.decoding, "decoding") == "valid_actions":
        choices = [answer_choices(ex["valid_actions"], fmt) for ex in picked]
        outs = choose(model, tokenizer, prompts, choices, batch_size=cfg.eval_batch_size * 8)  # ~8 choices a state
    else:
        was_training = model.training
        model.eval()
        outs = generate(model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch_size)
        model.train(was_training)
    hits = {"accuracy": 0, "optimal_rate": 0, "valid_rate": 0, "format_rate": 0}
    for ex, out in zip(picked, outs, strict=True):
        parsed = parse_completion(out.text, fmt, ex["valid_actions"])
        hits["accuracy"] += parsed.action == ex["expert_action"]
        hits["optimal_rate"] += parsed.action in ex["optimal_actions"]
        hits["valid_rate"] += parsed.valid
        hits["format_rate"] += parsed.well_formed
    return {f"eval/sft_{k}": v / max(1, n) for k, v in hits.items()}


@torch.no_grad()
def test_loss(model, encoded: list[tuple[list[int], list[int]]], pad_id: int, batch_size: int) -> float:
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    device = next(model.parameters()).device
    for start in range(0, len(encoded), batch_size):
        batch = {k: v.to(device) for k, v in collate(encoded[start : start + batch_size], pad_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        count = int((batch["labels"][:, 1:] != IGNORE).sum())
        total += float(completion_loss(logits, batch["labels"])) * count
        tokens += count
    model.train(was_training)
    return total / max(1, tokens)


# --- training ------------------------------------------------------------------------------------------------------
def train_sft(model, tokenizer, data, cfg: SFTConfig, fmt: str, out_dir: Path | None, log=print) -> dict[str, float]:
    """Fine-tune `model` in place on data["train"]; evaluate on data["test"] after each epoch. Returns the last
    metrics. `log(metrics: dict)` receives one record per optimizer step and per evaluation."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids(tokenizer)[0]
    train = [encode_example(tokenizer, ex["prompt"], ex["target"]) for ex in data["train"]]
    test = [encode_example(tokenizer, ex["prompt"], ex["target"]) for ex in data["test"]]
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_ratio * total)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and p.requires_grad]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 and p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup, cfg.schedule))
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    model.train()
    step, metrics = 0, {}
    bar = Progress("sft", total)  # a bar on a terminal, a line every ~15 s in a log
    for epoch in range(cfg.epochs):
        t0, seen_tokens, epoch_loss = time.perf_counter(), 0, 0.0
        for idx in length_batches([len(x) for x, _ in train], cfg.batch_size, rng):
            batch = {k: v.to(device) for k, v in collate([train[i] for i in idx], pad_id).items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                losses = sft_losses(model, batch, with_prompt=cfg.prompt_loss > 0)
            loss = losses[0]  # the answer's loss: what is logged and compared across runs
            opt.zero_grad(set_to_none=True)
            weighted(losses, cfg.prompt_loss).backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or float("inf"))
            opt.step()
            sched.step()
            step += 1
            epoch_loss += loss.item()
            bar.update(1, epoch=epoch + 1, loss=epoch_loss / (step - epoch * steps_per_epoch))  # this epoch's mean
            seen_tokens += int(batch["attention_mask"].sum())
            record = {"sft/step": step, "sft/epoch": epoch, "loss/sft": loss.item(), "sft/grad_norm": float(grad_norm),
                      "sft/lr": sched.get_last_lr()[0]}  # fmt: skip
            if len(losses) > 1:
                record["loss/sft_prompt"] = losses[1].item()
            log(record)
        elapsed = time.perf_counter() - t0
        metrics = {
            "sft/step": step,
            "sft/epoch": epoch + 1,
            "eval/sft_loss": test_loss(model, test, pad_id, cfg.eval_batch_size),
        }
        metrics |= single_step_accuracy(model, tokenizer, data["test"], fmt, cfg)
        metrics["perf/sft_tokens_per_s"] = seen_tokens / max(elapsed, 1e-9)
        log(metrics)
    bar.close()
    if out_dir is not None:
        final = Path(out_dir) / "final"
        model.save_pretrained(final)
        tokenizer.save_pretrained(final)
        (final / "sft_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    return metrics


@hydra.main(config_path="../conf", config_name="sft", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from datasets import load_from_disk

    from planner_rl.data import build_dataset
    from planner_rl.model import ModelLoadError, load_model_and_tokenizer

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        sft_cfg = SFTConfig(**OmegaConf.to_container(cfg.sft))
        data = load_from_disk(cfg.data_dir) if cfg.data_dir else build_dataset(cfg)[0]  # Arrow: no pickle
        need = {"prompt", "target", "valid_actions", "expert_action", "optimal_actions"}
        for split in ("train", "test"):
            if split not in data or need - set(data[split].column_names):
                raise ValueError(f"data_dir={cfg.data_dir}: not a `python -m planner_rl.data` dataset (needs "
                                 f"splits train and test with columns {', '.join(sorted(need))})")  # fmt: skip
        model, tokenizer = load_model_and_tokenizer(cfg.model)
    except (ModelLoadError, ValueError, KeyError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    print(f"sft: {len(data['train'])} train / {len(data['test'])} test examples, {model.num_parameters():,} "
          f"parameters, device {device}, run dir {run_dir}")  # fmt: skip
    with (run_dir / "metrics.jsonl").open("a") as records:

        def log(m: dict) -> None:
            records.write(json.dumps(m) + "\n")
            if "eval/sft_accuracy" in m or m.get("sft/step", 0) % 20 == 0:
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items()))

        train_sft(model, tokenizer, data, sft_cfg, cfg.prompt.output_format, run_dir / "sft", log)
    print(f"saved {run_dir / 'sft' / 'final'}")


if __name__ == "__main__":
    main()
