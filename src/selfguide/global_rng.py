"""One lock for the work that draws on torch's global random generator: training, and loading a model.

Training seeds the global generator and draws on it (the LoRA weights, the data order, dropout);
loading a PEFT adapter draws on it too (PEFT initialises the LoRA weights before it reads the saved
ones), and vLLM seeds it when its engine starts. When benchmark tasks run in threads, another
task's model loading between a training's seeding and its draws would change the trained weights.
So both hold this lock: one training at a time, no model loading beside it, while generation goes
on in the other threads (every backend samples with per-row keys, never the global generator).
"""

from __future__ import annotations

import threading

LOCK = threading.Lock()
