"""Token ids of chat prompts and answers, shared by every rollout backend, SFT and the restricted decoder."""

from __future__ import annotations


def encode_prompt(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a chat prompt, ending with the assistant header (`add_generation_prompt`)."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    return list(ids)


def stop_ids(tokenizer) -> list[int]:
    """Token ids that end an answer: the tokenizer's eos plus the chat end-of-turn marker when it has one."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    return sorted(ids)


def answer_ids(tokenizer, answer: str) -> list[int]:
    """Token ids of an assistant answer as SFT trains on it: the text, then the end-of-turn token."""
    return [*tokenizer.encode(answer, add_special_tokens=False), stop_ids(tokenizer)[0]]
