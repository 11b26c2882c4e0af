"""model.dtype "auto" and "native": what they resolve to, and that the hf backend and the call
cache's model identity follow it."""

from __future__ import annotations

import pytest
import torch

from selfguide.backends import precision
from selfguide.backends.factory import backend_info
from selfguide.backends.hf import HFBackend
from selfguide.backends.model_config import ModelConfig
from selfguide.errors import SelfGuideError


@pytest.mark.parametrize("hardware_bf16", [True, False])
def test_native_is_bf16_only_on_a_cpu_that_computes_it_and_auto_stays_fp32(monkeypatch, hardware_bf16):
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: hardware_bf16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.resolved_dtype("auto", "cpu") == precision.resolved_dtype("auto") == "float32"
    native = "bfloat16" if hardware_bf16 else "float32"
    assert precision.resolved_dtype("native", "cpu") == precision.resolved_dtype("native") == native
    assert precision.resolved_dtype("native", "mps") == "float32"
    assert precision.resolved_dtype("float16", "cpu") == "float16"


def test_on_a_gpu_native_and_auto_agree(monkeypatch):
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for bf16, expected in ((True, "bfloat16"), (False, "float16")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda bf16=bf16: bf16)
        assert precision.resolved_dtype("auto", "cuda:1") == precision.resolved_dtype("native", "auto") == expected
    assert precision.resolved_dtype("native", "cpu") == "bfloat16"  # a CPU run on a GPU machine


def test_the_backend_loads_what_native_resolves_to_and_the_cache_keys_it(monkeypatch, tiny_model_dir):
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: True)
    with HFBackend(str(tiny_model_dir), device="cpu", dtype="native") as b:
        assert b.info.extra["dtype"] == "bfloat16" and b.model.dtype == torch.bfloat16
        [out] = dict(b.generate([_request()]))[0]
        assert out.completion_tokens > 0
    native = backend_info(ModelConfig(name=str(tiny_model_dir), dtype="native", device="cpu"))
    explicit = backend_info(ModelConfig(name=str(tiny_model_dir), dtype="bfloat16", device="cpu"))
    fp32 = backend_info(ModelConfig(name=str(tiny_model_dir), dtype="auto", device="cpu"))
    assert native.fingerprint == explicit.fingerprint != fp32.fingerprint
    with pytest.raises(SelfGuideError, match="use auto, native, float32"):
        HFBackend(str(tiny_model_dir), device="cpu", dtype="float8")


def _request():
    from selfguide.backends.base import Request, SamplingParams

    messages = [{"role": "user", "content": "the cat"}]
    return Request(messages, SamplingParams(temperature=0.0, max_new_tokens=4))
