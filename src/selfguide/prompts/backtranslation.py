"""Instruction backtranslation's prompts (Li et al. 2023, "Self-Alignment with Instruction Backtranslation").

Three models talk here, each finetuned with the task prompt of `selfguide.prompts` (a system turn,
then the user turn, then the answer), so each is prompted exactly as it was trained:
  - the backward model M_yx: system BACKWARD (or its task-focused form), user = an output,
    answer = the instruction (or task input) that output answers;
  - the forward models M0, M1, ...: system ASSISTANT, user = an instruction, answer = the output;
  - the same forward models as curators: user = RATING_PROMPT filled in, answer = a reasoned
    rating ending in "Score: <1-5>".

RATING_PROMPT is the paper's self-curation prompt (its appendix table 19) verbatim: the
instruction and the candidate answer follow it (typographic apostrophes made plain).
"""

from __future__ import annotations

import re

BACKWARD = "Write the instruction that the following text is the response to. Reply with the instruction only."
ASSISTANT = "You are a helpful assistant. Respond to the instruction."


def task_backward(instruction: str) -> str:
    """The task-focused backward prompt: the task's own instruction says what inputs look like."""
    return (
        f"A task has these directions:\n{instruction}\n\n"
        "The user gives the correct output of one example of this task. Write the input of that example, "
        "in the task's input format. Reply with the input only."
    )


def task_instruction(instruction: str, task_input: str) -> str:
    """A task example as one instruction for the forward models: the directions, then the input."""
    return f"{instruction}\n\n{task_input}"


RATING_PROMPT = """Below is an instruction from an user and a candidate answer. Evaluate whether or not the answer is a good example of how AI Assistant should respond to the user's instruction. Please assign a score using the following 5-point scale:
1: It means the answer is incomplete, vague, off-topic, controversial, or not exactly what the user asked for. For example, some content seems missing, numbered list does not start from the beginning, the opening sentence repeats user's question. Or the response is from another person's perspective with their personal experience (e.g. taken from blog posts), or looks like an answer from a forum. Or it contains promotional text, navigation text, or other irrelevant information.
2: It means the answer addresses most of the asks from the user. It does not directly address the user's question. For example, it only provides a high-level methodology instead of the exact solution to user's question.
3: It means the answer is helpful but not written by an AI Assistant. It addresses all the basic asks from the user. It is complete and self contained with the drawback that the response is not written from an AI assistant's perspective, but from other people's perspective. The content looks like an excerpt from a blog post, web page, or web search results. For example, it contains personal experience or opinion, mentions comments section, or share on social media, etc.
4: It means the answer is written from an AI assistant's perspective with a clear focus of addressing the instruction. It provide a complete, clear, and comprehensive response to user's question or instruction without missing or irrelevant information. It is well organized, self-contained, and written in a helpful tone. It has minor room for improvement, e.g. more concise and focused.
5: It means it is a perfect answer from an AI Assistant. It has a clear focus on being a helpful AI Assistant, where the response looks like intentionally written to address the user's question or instruction without any irrelevant sentences. The answer provides high quality content, demonstrating expert knowledge in the area, is very well written, logical, easy-to-follow, engaging and insightful.
Please first provide a brief reasoning you used to derive the rating score, and then write "Score: <rating>" in the last line.

{instruction}

{answer}"""

SCORE_PREFILL = "Score:"  # how a curator's reply opens with score_first

_SCORE = re.compile(r"score\s*[:：]\s*\**\s*([1-5])\b", re.IGNORECASE)


def rating_request(instruction: str, answer: str) -> str:
    return RATING_PROMPT.replace("{instruction}", instruction.strip()).replace("{answer}", answer.strip())


def parse_score(text: str) -> int | None:
    """The rating a curator wrote: the last "Score: n" with n in 1-5 (the prompt asks for it on the
    last line, so a score quoted earlier in the reasoning does not count), else None."""
    found = _SCORE.findall(text)
    return int(found[-1]) if found else None
