"""`train.num_processes: N`: one training in N processes (DDP), started by accelerate's launcher.

The run stays one process: it synthesizes, then hands the training to N ranks of
`python -m selfguide.train.sft JOB` and waits; rank 0 writes the result, and the run evaluates
the trained model itself, once. On GPUs each rank takes one GPU; without CUDA the ranks are CPU
processes over gloo (the torchrun launcher with CUDA hidden: accelerate's `--cpu` alone starts
one process). FSDP2 or ZeRO-3 for full finetuning come from `train.accelerate_config`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from selfguide.errors import SelfGuideError
from selfguide.tasks.spec import TaskSpec
from selfguide.train.config import TrainConfig

JOB = "launch_job.json"
JOB_RESULT = "launch_result.json"


def launched() -> bool:
    """Whether this process is one rank of a launched training (accelerate and torchrun set these)."""
    return "LOCAL_RANK" in os.environ or "ACCELERATE_PROCESS_INDEX" in os.environ


def launch_command(config: TrainConfig, job: Path) -> tuple[list[str], dict]:
    import torch

    port = free_port()
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(config.num_processes), "--num_machines", "1", "--main_process_port", str(port)]
    env = dict(os.environ)
    if config.accelerate_config:
        command += ["--config_file", config.accelerate_config]
    else:
        command += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
        if not torch.cuda.is_available():  # DDP over gloo, one thread per rank so N ranks share the cores
            env.update(CUDA_VISIBLE_DEVICES="", ACCELERATE_USE_CPU="true", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    return [*command, "-m", "selfguide.train.sft", str(job)], env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_in_processes(task: TaskSpec | None, pairs: list, model: str, out_dir: Path, config: TrainConfig, *, resume: bool, progress: bool) -> dict:
    """`train(...)` in `config.num_processes` ranks (each runs `selfguide.train.sft.train_job`);
    returns the fields of rank 0's TrainResult, as it wrote them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    job = out_dir / JOB
    job.write_text(json.dumps({
        "task": task.model_dump(mode="json") if task is not None else None, "pairs": [list(p) for p in pairs], "model": model,
        "config": config.model_dump(mode="json"), "resume": resume, "progress": progress,
    }))  # fmt: skip
    (out_dir / JOB_RESULT).unlink(missing_ok=True)
    command, env = launch_command(config, job)
    done = subprocess.run(command, env=env, stdout=None if progress else subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0 or not (out_dir / JOB_RESULT).exists():
        tail = "; ".join(line.strip() for line in done.stderr.strip().splitlines()[-3:])
        raise SelfGuideError(f"training in {config.num_processes} processes failed (exit {done.returncode}): {tail[-400:]}; the full log is the launcher's stderr above")
    return json.loads((out_dir / JOB_RESULT).read_text())
