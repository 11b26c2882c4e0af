"""`bench superni|methods --executor ray`: each independent part of a bench (task × setting ×
method, one seed at a time) runs as one Ray task, on any node of the cluster.

A part is the same `work(bench, name)` the local runner calls in a thread (benchmark/runner.py
`run_parallel`), given a bench of its own in the worker: the same options and tasks, its models
loaded there, its calls written to a cache shard of its own (scale/shard_cache.py). The driver
merges each finished part's shard into the run's cache, adds its call counts, and writes the
tables as a local run does. A worker that dies is retried (`MAX_RETRIES`); the retry reopens the
same shard, so no call the dead worker finished is made again. A driver that dies leaves shards
behind, merged when the bench is run again.

Needs the run folder (--out) on a filesystem every node sees, as the parts write their data,
trainings and evaluations there.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

from selfguide.backends.cache import CallStats
from selfguide.backends.model_config import ModelConfig
from selfguide.errors import SelfGuideError
from selfguide.scale.shard_cache import ShardCache, merge_shards, shard_folder

MAX_RETRIES = 3  # a part whose worker dies (killed, node lost, out of memory) runs again, up to this many times
NOT_PORTABLE = ("cache", "model", "engine", "stats", "teachers")  # what a part's bench opens for itself in the worker


def connect(address: str | None):
    """Ray, joined to the cluster at `address` (or a local one started here), once per process."""
    try:
        import ray
    except ImportError:
        raise SelfGuideError("--executor ray needs Ray: pip install 'selfguide[ray]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise SelfGuideError(f"--ray-address {address}: cannot join the Ray cluster ({err})") from None
    return ray


def part_resources(model: ModelConfig, cluster_gpus: float) -> dict:
    """What one part asks Ray for: a GPU when its model runs on a GPU (a part also trains there, so
    a served model's parts ask for one too), a CPU otherwise."""
    on_gpu = model.device.startswith("cuda") or (model.device == "auto" and cluster_gpus > 0)
    return {"num_gpus": 1, "num_cpus": 1} if on_gpu and cluster_gpus > 0 else {"num_cpus": 1}


def run_part(kind: type, state: dict, work: Callable, name: str, shard: str, base: str) -> tuple[object, dict]:
    """In the worker: `work(bench, name)` on a bench of its own; returns its result and call counts."""
    bench = kind.__new__(kind)
    bench.__dict__.update(state)
    bench.cache = ShardCache(shard, base)
    bench.stats = CallStats()
    bench.open_models()
    try:
        result = work(bench, name)
    finally:
        bench.close()
    return result, bench.stats.as_dict()


def run_on_ray(bench, names: list[str], work: Callable) -> dict:
    """`work(bench, name)` for every name, each a Ray task; the results by name."""
    options = bench.options
    if options.max_calls is not None:
        raise SelfGuideError("--max-calls counts the calls of one process: it does not combine with --executor ray")
    ray = connect(options.ray_address)
    cache = bench.cache.path
    shards = shard_folder(cache)
    merge_shards(cache, sorted(shards.glob("*.sqlite")))  # a driver that died left them
    shards.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in vars(bench).items() if k not in NOT_PORTABLE}
    state["options"] = dataclasses.replace(options, progress=False)  # a worker's bars would interleave in the driver's log
    resources = part_resources(bench.base.model, ray.cluster_resources().get("GPU", 0))
    remote = ray.remote(run_part).options(max_retries=MAX_RETRIES, retry_exceptions=False, **resources)
    pending = {}
    for name in names:
        shard = shards / f"{uuid.uuid4().hex}.sqlite"
        pending[remote.remote(type(bench), state, work, name, str(shard), str(cache))] = (name, shard)
    results = {}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            name, shard = pending.pop(ready[0])
            result, counts = result_of(ray, ready[0], name)
            merge_shards(cache, [shard])
            bench.stats.add(**counts)
            results[name] = result
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return {name: results[name] for name in names}


def result_of(ray, ref, name: str):
    """The part's result, or its own error (a SelfGuideError stays one line)."""
    from ray.exceptions import RayError, RayTaskError

    try:
        return ray.get(ref)
    except RayTaskError as err:
        cause = err.cause
        raise cause if isinstance(cause, Exception) else err from None
    except RayError as err:  # its worker or node died, or ran out of memory, every try
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise SelfGuideError(f"bench part {name!r} failed on Ray after {MAX_RETRIES} retries ({type(err).__name__}: {first}); finished calls are cached: rerun to continue") from None
