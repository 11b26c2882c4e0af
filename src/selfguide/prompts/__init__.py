"""Prompts: the task prompt (`task.py`), shared by annotation, training and evaluation, and each
method's own prompts (one file per method)."""

from selfguide.prompts.task import Pair, instruction_messages, pair_messages, pair_of, task_messages

__all__ = ["Pair", "instruction_messages", "pair_messages", "pair_of", "task_messages"]
