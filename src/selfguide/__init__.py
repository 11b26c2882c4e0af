"""selfguide: SELF-GUIDE self-synthetic finetuning (Zhao et al., 2024) as a toolkit."""

__version__ = "0.1.0"
