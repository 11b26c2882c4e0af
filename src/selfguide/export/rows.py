"""One synthetic pair as a row of each export format, carrying the full training prompt.

selfguide trains on `task_messages`: the instruction as a system turn, each gold demo as an
earlier user/assistant pair, then the input, and the loss falls on the answer only. Every format
below writes that same conversation, so a trainer reading it trains on exactly what selfguide would:

  hf, parquet  TRL's conversational prompt-completion columns (`prompt`, `completion`): SFTTrainer
               then computes the loss on the completion only, as selfguide does
  alpaca       LLaMA-Factory's alpaca schema: `system`, `history` (the demos), `instruction`, `input`, `output`
  sharegpt     LLaMA-Factory's / axolotl's ShareGPT schema: `system` and `conversations` of {from, value}
  openai       OpenAI fine-tuning chat rows: `messages`, the demo answers with `weight: 0` so that only
               the final answer is trained on

A row that carries its own `instruction` (general-purpose methods) is written with the zero-shot
prompt selfguide trains it on: that instruction and the input as one user turn.
"""

from __future__ import annotations

from selfguide.prompts.task import pair_messages, pair_of
from selfguide.tasks.spec import TaskSpec

SHAREGPT_ROLES = {"user": "human", "assistant": "gpt"}


def demos_of(task: TaskSpec | None) -> list[tuple[str, str]]:
    return [(e.input, e.output) for e in task.examples] if task is not None else []


def prompt_of(task: TaskSpec | None, pair: dict) -> list[dict]:
    """The training prompt of a row: the task prompt, or the row's own instruction zero-shot."""
    return [dict(m) for m in pair_messages(pair_of(pair), task.instruction if task is not None else None, demos_of(task))]


def system_and_turns(task: TaskSpec | None, pair: dict) -> tuple[str, list[dict]]:
    """The system turn's text ("" without one) and the turns after it."""
    messages = prompt_of(task, pair)
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return "", messages


def prompt_completion_row(task: TaskSpec | None, pair: dict) -> dict:
    return {
        "id": str(pair.get("id", "")),
        "task": task.name if task is not None else "",
        "input": pair["input"],
        "output": pair["output"],
        "prompt": prompt_of(task, pair),
        "completion": [{"role": "assistant", "content": pair["output"]}],
    }


def alpaca_row(task: TaskSpec | None, pair: dict) -> dict:
    # LLaMA-Factory builds the user turn as instruction + "\n" + input; an empty `input` keeps the
    # user turn exactly ours (the task input, or a row's instruction and input).
    system, turns = system_and_turns(task, pair)
    history = [[turns[i]["content"], turns[i + 1]["content"]] for i in range(0, len(turns) - 1, 2)]
    return {"system": system, "history": history, "instruction": turns[-1]["content"], "input": "", "output": pair["output"]}


def sharegpt_row(task: TaskSpec | None, pair: dict) -> dict:
    system, turns = system_and_turns(task, pair)  # the system turn has its own column
    turns.append({"role": "assistant", "content": pair["output"]})
    return {"system": system, "conversations": [{"from": SHAREGPT_ROLES[m["role"]], "value": m["content"]} for m in turns]}


def openai_row(task: TaskSpec | None, pair: dict) -> dict:
    messages = prompt_of(task, pair)
    for message in messages:
        if message["role"] == "assistant":
            message["weight"] = 0  # a gold demo: context, not a training target
    messages.append({"role": "assistant", "content": pair["output"]})
    return {"messages": messages}
