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
"""

from __future__ import annotations

from selfguide.prompts import task_messages
from selfguide.tasks.spec import TaskSpec

SHAREGPT_ROLES = {"user": "human", "assistant": "gpt"}


def demos_of(task: TaskSpec) -> list[tuple[str, str]]:
    return [(e.input, e.output) for e in task.examples]


def prompt_completion_row(task: TaskSpec, pair: dict) -> dict:
    return {
        "id": str(pair.get("id", "")),
        "task": task.name,
        "input": pair["input"],
        "output": pair["output"],
        "prompt": task_messages(task.instruction, demos_of(task), pair["input"]),
        "completion": [{"role": "assistant", "content": pair["output"]}],
    }


def alpaca_row(task: TaskSpec, pair: dict) -> dict:
    # LLaMA-Factory builds the user turn as instruction + "\n" + input; an empty `input` keeps the
    # user turn exactly the task input.
    return {
        "system": task.instruction,
        "history": [[demo_input, demo_output] for demo_input, demo_output in demos_of(task)],
        "instruction": pair["input"],
        "input": "",
        "output": pair["output"],
    }


def sharegpt_row(task: TaskSpec, pair: dict) -> dict:
    messages = task_messages(task.instruction, demos_of(task), pair["input"])[1:]  # the system turn has its own column
    messages.append({"role": "assistant", "content": pair["output"]})
    return {"system": task.instruction, "conversations": [{"from": SHAREGPT_ROLES[m["role"]], "value": m["content"]} for m in messages]}


def openai_row(task: TaskSpec, pair: dict) -> dict:
    messages: list[dict] = [dict(m) for m in task_messages(task.instruction, demos_of(task), pair["input"])]
    for message in messages:
        if message["role"] == "assistant":
            message["weight"] = 0  # a gold demo: context, not a training target
    messages.append({"role": "assistant", "content": pair["output"]})
    return {"messages": messages}
