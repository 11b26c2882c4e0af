"""The popular small model families through the hf backend, each as a tiny random model built
here (selfguide.tinymodel): generation token-identical to plain `generate`, label scores equal to
a plain forward pass, LoRA training that moves the model, and `selfguide run` to its report.
Plus a base model with no chat template. CPU, float32.

A family the backend cannot serve fast must say so in one log line, never a traceback: the plain
ones (one global-attention DynamicCache) must not fall back at all."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from tests.conftest import REPO, SUPERNI
from typer.testing import CliRunner

from selfguide.backends.base import Request, SamplingParams, ScoreRequest
from selfguide.backends.chat import encode_prompt, has_chat_template, render_answer, render_prompt, stop_strings_for
from selfguide.backends.hf import HFBackend
from selfguide.cli import app
from selfguide.prompts.self_guide import input_generation_messages
from selfguide.prompts.task import task_messages
from selfguide.tasks.spec import Example, TaskSpec
from selfguide.tinymodel import build_tiny_model
from selfguide.train.config import TrainConfig
from selfguide.train.sft import train

# family -> build_tiny_model arguments. "base": Llama with no chat template, so that the plain
# completion format is checked on a cache that is known to be served right.
FAMILIES = {
    "llama": {"architecture": "llama"},
    "qwen2": {"architecture": "qwen2"},
    "qwen3": {"architecture": "qwen3"},
    "gemma2": {"architecture": "gemma2"},
    "gemma3": {"architecture": "gemma3"},
    "mistral": {"architecture": "mistral"},
    "phi3": {"architecture": "phi3"},
    "base": {"architecture": "llama", "chat_template": False},
}
FAMILY_IDS = [pytest.param(f, id=f) for f in FAMILIES]


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory):
    """Family name -> its tiny model folder, built on first use and kept for the session."""
    built = {}

    def build(family: str):
        if family not in built:
            built[family] = build_tiny_model(tmp_path_factory.mktemp(f"tiny-{family}"), **FAMILIES[family])
        return built[family]

    return build


SYSTEM = "Answer the question with yes or no, and say why in a few words."
TEXTS = [
    "the cat",
    "a much longer question about the world and the people who live in it for many years",
    "yes",
    "is this premise a support or a contradiction of the hypothesis",
]


def chat(text: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def plain_generate(backend: HFBackend, messages, max_new_tokens: int) -> tuple[str, int]:
    """One prompt alone, no padding, through the model's own `generate`: the text (cut at EOS or
    the rendering's stop strings, as the backend cuts) and the tokens it took."""
    tokenizer = backend.tokenizer
    ids = torch.tensor([encode_prompt(tokenizer, messages)])
    with torch.no_grad():
        out = backend.model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)[0, ids.shape[1] :].tolist()
    eos = tokenizer.eos_token_id
    body = out[: out.index(eos)] if eos in out else out
    stops = stop_strings_for(tokenizer)
    for k in range(1, len(body) + 1):
        text = tokenizer.decode(body[:k], skip_special_tokens=True)
        if any(s in text for s in stops):
            return text[: min(p for p in (text.find(s) for s in stops) if p >= 0)], k
    return tokenizer.decode(body, skip_special_tokens=True), len(body) + (eos in out)


def fallback_lines(caplog) -> list[str]:
    """What the backend said about leaving its fast path; each must be one line, no traceback."""
    records = [r for r in caplog.records if r.name.startswith("selfguide")]
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in records), [r.getMessage() for r in records]
    return [r.getMessage() for r in records if "not supported" in r.getMessage()]


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_greedy_generation_is_plain_generate(family, family_dir, caplog):
    """Prompts sharing a prefix, different lengths and limits, more rows than the batch holds
    (rows join while it decodes): each completion is what `generate` gives the prompt alone."""
    limits = [4, 12, 8, 12, 6]
    requests = [Request(chat(TEXTS[i % 4]), SamplingParams(temperature=0.0, max_new_tokens=limit)) for i, limit in enumerate(limits)]
    requests.append(Request(chat(TEXTS[1]), SamplingParams(temperature=0.0, n=2, max_new_tokens=6)))
    with caplog.at_level(logging.INFO, logger="selfguide"), HFBackend(str(family_dir(family)), device="cpu", dtype="float32", batch_size=3) as b:
        got = dict(b.generate(requests))
        for i, request in enumerate(requests):
            text, tokens = plain_generate(b, list(request.messages), request.params.max_new_tokens)
            assert [(c.text, c.completion_tokens) for c in got[i]] == [(text, tokens)] * request.params.n, (i, family)
    assert fallback_lines(caplog) == []  # prefix reuse, refill and sample sharing stay on


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_sampled_generation_matches_one_row_per_sample(family, family_dir, caplog):
    """Sampled requests with everything on (prefix reuse, refill, shared samples) give the
    completions of the backend's slowest mode: one row per sample, alone, no reuse."""
    requests = [
        Request(chat(TEXTS[i % 4]), SamplingParams(temperature=(1.0, 0.7)[i % 2], top_k=(0, 20)[i % 2], n=3, seed=i, max_new_tokens=4 + 2 * i))
        for i in range(4)
    ]
    with caplog.at_level(logging.INFO, logger="selfguide"):
        with HFBackend(str(family_dir(family)), device="cpu", dtype="float32") as fast:
            shared = {i: [c.as_dict() for c in cs] for i, cs in fast.generate(requests)}
        slow = dict(batch_size=1, reuse_prefix=False, refill=False, share_samples=False)
        with HFBackend(str(family_dir(family)), device="cpu", dtype="float32", **slow) as b:
            alone = {i: [c.as_dict() for c in cs] for i, cs in b.generate(requests)}
    assert shared == alone
    assert fallback_lines(caplog) == []


# Each fast path the backend may turn off for a model.
FAST_PATHS = ("reuse_prefix", "share_prefill", "share_samples", "refill")


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_every_family_stays_on_the_fast_path(family, family_dir, caplog):
    """Sampled requests that share a prefix and part: every family, sliding-window and hybrid
    ones included, keeps prefix reuse, shared prefill, refill and sample sharing, and says
    nothing about leaving them."""
    requests = [Request(chat(text), SamplingParams(temperature=1.0, n=3, seed=i, max_new_tokens=4)) for i, text in enumerate(TEXTS)]
    with caplog.at_level(logging.INFO, logger="selfguide"), HFBackend(str(family_dir(family)), device="cpu", dtype="float32") as b:
        list(b.generate(requests))
        off = [name for name in FAST_PATHS if getattr(b, name) is not True]
    assert off == [], off
    assert fallback_lines(caplog) == []


def plain_logprob(backend: HFBackend, messages, answer: str) -> tuple[float, int]:
    """A full forward over prompt + answer ids; log_softmax summed at the answer positions."""
    tokenizer = backend.tokenizer
    prompt = encode_prompt(tokenizer, messages)
    target = tokenizer(render_answer(tokenizer, messages, answer), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = backend.model(input_ids=torch.tensor([prompt + target])).logits[0].float()
    logprobs = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
    return float(logprobs[torch.arange(len(target)), torch.tensor(target)].sum()), len(target)


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_label_scores_are_plain_log_probabilities(family, family_dir):
    """Candidates scored after prompts that share a task prefix (few-shot, as annotation sends
    them) equal the log-probabilities of one plain forward pass each."""
    demos = [("is the sky blue", "yes"), ("is fire cold", "no")]
    labels = ("yes", "no", "neutral, because it is")
    requests = [ScoreRequest(task_messages(SYSTEM, demos, text), labels) for text in TEXTS[:3]]
    with HFBackend(str(family_dir(family)), device="cpu", dtype="float32") as b:
        scores = dict(b.score(requests))
        for i, request in enumerate(requests):
            for label, score in zip(labels, scores[i]):
                expected, tokens = plain_logprob(b, list(request.messages), label)
                assert score.tokens == tokens
                assert score.logprob == pytest.approx(expected, abs=1e-4), (i, label)


TASK = TaskSpec(
    name="colors",
    instruction="Reply with the color.",
    examples=[Example(input="The sky", output="blue"), Example(input="Grass", output="green")],
    type="generation",
)
PAIRS = [(f"Item {i}", color) for i, color in enumerate(["red", "green", "blue", "red"])]


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_lora_training_changes_the_model(family, family_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = family_dir(family)
    config = TrainConfig(epochs=1, batch_size=2, learning_rate=1e-2, max_length=128, save_every_epoch=False, lora_dropout=0.0)
    result = train(TASK, PAIRS, str(model), tmp_path / "train", config, progress=False)
    assert result.steps == 2 and result.final_loss is not None and result.final_loss == result.final_loss  # not NaN
    tokenizer = AutoTokenizer.from_pretrained(model)
    prompt = torch.tensor([encode_prompt(tokenizer, task_messages(TASK.instruction, [(e.input, e.output) for e in TASK.examples], "Item 0"))])
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    with torch.no_grad():
        before = base(prompt).logits
        after = PeftModel.from_pretrained(base, str(result.adapter_dir))(prompt).logits
    assert not torch.allclose(before, after, atol=1e-4)


# `selfguide run` at the smallest settings that still cross every stage: 10 inputs, 3 samples each,
# training in batches of 5 (2-3 steps, no checkpoints), 3 eval items.
RUN_SETTINGS = [
    "synth.inputs.rounds=1",
    "synth.inputs.max_new_tokens=16",
    "synth.outputs.n=3",
    "synth.self_label.items=3",
    "train.batch_size=5",
    "train.save_every_epoch=false",
    "eval.limit=3",
    "eval.max_new_tokens=4",
]


def selfguide_run(model, out):
    args = ["run", "task036", "--model", str(model), "--config", str(REPO / "configs" / "tiny.yaml"), "--out", str(out), "-q"]
    for setting in RUN_SETTINGS:
        args += ["--set", setting]
    return CliRunner().invoke(app, args, env={"SELFGUIDE_SUPERNI": str(SUPERNI)})


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILY_IDS)
def test_selfguide_run_ends_with_a_report(family, family_dir, tmp_path):
    """Every stage runs; the why line states how many written inputs the filters kept and how
    well the model labelled gold items itself, the two numbers that say whether a model (a base
    model in particular) can teach itself the task."""
    out = tmp_path / "run"
    result = selfguide_run(family_dir(family), out)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    lines = [line.split("\r")[-1] for line in result.output.splitlines()]
    assert any(line.startswith("Verdict") for line in lines)
    why = next(line for line in lines if line.startswith("Why"))
    assert "written inputs" in why or "the funnel lost most at input_filter" in why
    assert "before training, the model's own labels scored" in why and "on 3 gold items" in why
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert json.loads((out / "eval" / "finetuned" / "metrics.json").read_text())["n"] == 3


def test_a_base_model_gets_a_completion_style_prompt(family_dir):
    """No chat template: the task prompt is few-shot text a base model continues (headers, no
    special tokens), the answer ends at the next header or EOS, and input writing is a numbered
    list the model continues in its response."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(family_dir("base"))
    assert not has_chat_template(tokenizer)
    messages = task_messages("Reply with the color.", [("The sky", "blue")], "Grass")
    assert render_prompt(tokenizer, messages) == (
        "Reply with the color.\n\n### Input:\nThe sky\n\n### Response:\nblue\n\n### Input:\nGrass\n\n### Response:\n"
    )
    assert render_answer(tokenizer, messages, "green") == "green" + tokenizer.eos_token  # training teaches it to stop
    assert stop_strings_for(tokenizer) == ("\n### ",)  # untrained, it stops where it would write the next example
    writing = render_prompt(tokenizer, input_generation_messages("Reply with the color.", ["The sky", "Grass"], []))
    assert writing.startswith("### Input:\nTask instruction:\nReply with the color.")
    assert writing.endswith("### Response:\n[Example 1]\nThe sky\n\n[Example 2]\nGrass\n\n[Example 3]\n")


def test_tiny_model_command_writes_any_family(tmp_path):
    out = tmp_path / "g3"
    result = CliRunner().invoke(app, ["tiny-model", str(out), "--architecture", "gemma3", "--no-chat-template"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"]
    assert config["layer_types"] == ["sliding_attention", "sliding_attention", "full_attention"]
    assert "chat_template" not in json.loads((out / "tokenizer_config.json").read_text())
    unknown = CliRunner().invoke(app, ["tiny-model", str(tmp_path / "x"), "--architecture", "gpt9"])
    assert unknown.exit_code != 0 and "one of llama, qwen2" in unknown.output and "Traceback" not in unknown.output
