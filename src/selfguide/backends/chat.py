"""Chat rendering: messages to the text and token ids a model continues.

`encode_prompt` uses the tokenizer's chat template, or a plain header format for models without
one. Training and every in-process backend go through it, so a trained prompt and an evaluated
prompt are the same tokens.
"""

from __future__ import annotations

from selfguide.backends.base import Message

# Plain format for tokenizers without a chat template. Generation stops at the next header.
PLAIN_HEADERS = {"user": "### Input:\n", "assistant": "### Response:\n"}
PLAIN_STOP = "\n### "


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer, messages: list[Message]) -> str:
    """The text the model continues: the conversation so far plus the assistant header. A last
    message from the assistant is a prefill: the model continues that turn instead of opening one."""
    prefill = is_prefill(messages)
    if has_chat_template(tokenizer):
        return _apply_template(tokenizer, messages, add_generation_prompt=not prefill, continue_final=prefill)
    if prefill:
        return _render_plain(messages[:-1]) + PLAIN_HEADERS["assistant"] + messages[-1]["content"]
    return _render_plain(messages) + PLAIN_HEADERS["assistant"]


def is_prefill(messages: list[Message]) -> bool:
    return bool(messages) and messages[-1]["role"] == "assistant"


def render_answer(tokenizer, messages: list[Message], answer: str) -> str:
    """The text that follows `render_prompt(messages)` when the assistant answers `answer`,
    closing tokens of the turn included (the chat template's end-of-turn, or EOS)."""
    prompt = render_prompt(tokenizer, messages)
    if has_chat_template(tokenizer):
        full = _apply_template(tokenizer, [*messages, {"role": "assistant", "content": answer}], add_generation_prompt=False)
        if full.startswith(prompt):
            return full[len(prompt) :]
        # Templates that render the last assistant turn differently from a generation prompt.
        return answer + (tokenizer.eos_token or "")
    return answer + (tokenizer.eos_token or "")


def encode_prompt(tokenizer, messages: list[Message]) -> list[int]:
    """Token ids of `render_prompt`: the template already holds BOS; the plain format gets it added."""
    text = render_prompt(tokenizer, messages)
    return tokenizer(text, add_special_tokens=not has_chat_template(tokenizer))["input_ids"]


def stop_strings_for(tokenizer) -> tuple[str, ...]:
    """Strings that end an answer in this rendering besides EOS."""
    return () if has_chat_template(tokenizer) else (PLAIN_STOP,)


def _apply_template(tokenizer, messages: list[Message], add_generation_prompt: bool, continue_final: bool = False) -> str:
    # continue_final: the last (assistant) turn is left open for the model to continue.
    options = {"add_generation_prompt": add_generation_prompt, "continue_final_message": continue_final}
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, **options)
    except Exception:
        # Some templates (Mistral, Gemma) refuse a system turn: fold it into the first user turn.
        if not messages or messages[0]["role"] != "system":
            raise
        return tokenizer.apply_chat_template(fold_system(messages), tokenize=False, **options)


def fold_system(messages: list[Message]) -> list[Message]:
    """Merge a leading system turn into the first user turn."""
    system, rest = messages[0]["content"], list(messages[1:])
    if rest and rest[0]["role"] == "user":
        rest[0] = {"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}
    else:
        rest.insert(0, {"role": "user", "content": system})
    return rest


def _render_plain(messages: list[Message]) -> str:
    parts = []
    for message in messages:
        if message["role"] == "system":
            parts.append(message["content"].strip() + "\n\n")
        else:
            parts.append(PLAIN_HEADERS[message["role"]] + message["content"] + "\n\n")
    return "".join(parts)
