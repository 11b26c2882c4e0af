"""What the general-purpose methods (Self-Instruct, Alpaca) share: what their data must not
reproduce, and who wrote, labelled and is trained on it."""

from __future__ import annotations

from selfguide.methods import MethodContext


def eval_texts(ctx: MethodContext) -> list[str]:
    """Text the data must not reproduce: the task's eval inputs (when there is a task) and the context's."""
    task_inputs = [item.input for item in ctx.task.eval] if ctx.task else []
    return task_inputs + list(ctx.eval_texts)


def models_summary(ctx: MethodContext) -> dict:
    """Which model wrote the instructions and inputs, which labelled them (wrote the outputs), and
    which is finetuned on the result: the teacher writes and labels when there is one."""
    writer = ctx.writer.info.model
    return {"wrote": writer, "labelled": writer, "trained": ctx.model.info.model}
