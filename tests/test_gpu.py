"""Learners on a GPU (`num_gpus_per_learner=1`). Skipped without CUDA: our CI machines have none.

Every tensor the HA code makes on the learner (team batches, advantages, the factor M, the
recurrent critic's states, replay batches and their noise, HATRPO's conjugate gradient, the
reductions over learners) must live on the learner's device; one iteration of each algorithm
on a GPU learner checks that nothing is left on the CPU.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from ray import cloudpickle as ray_cloudpickle

from conftest import on_every_learner, small_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
# Remote learners cannot import this file: ship its functions by value.
ray_cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _gpu_config(name: str):
    from test_multi_learner import _off_policy_config
    from test_recurrent import recall_config

    from harl_rllib import HAPPOConfig, HASACConfig, HATD3Config, HATRPOConfig

    if name == "happo":
        return small_config(HAPPOConfig, batch=200, minibatch_size=50)
    if name == "hatrpo":
        return small_config(HATRPOConfig, batch=200)
    if name == "happo_gru":
        return recall_config(batch=120, envs=4)
    cls = {"hatd3": HATD3Config, "hasac": HASACConfig}[name]
    return _off_policy_config(cls, 32, warmup_steps=40, train_interval=10, update_per_train=0.5)


def _devices(algo) -> list[set[str]]:
    """Per learner: the devices of every parameter and buffer of every module."""

    def of(learner) -> set[str]:
        return {
            str(t.device.type)
            for mid in learner.module.keys()
            for t in [*learner.module[mid].parameters(), *learner.module[mid].buffers()]
        }

    return on_every_learner(algo, of)


@pytest.mark.parametrize("name", ["happo", "hatrpo", "happo_gru", "hatd3", "hasac"])
def test_one_learner_on_a_gpu(ray_session, name):
    algo = _gpu_config(name).learners(num_learners=0, num_gpus_per_learner=1).build_algo()
    try:
        for _ in range(3):
            result = algo.train()
        assert _devices(algo) == [{"cuda"}]
        assert np.isfinite(result["env_runners"]["num_env_steps_sampled_lifetime"])
    finally:
        algo.stop()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
@pytest.mark.parametrize("name", ["happo", "hatrpo", "happo_gru", "hatd3", "hasac"])
def test_two_learners_on_two_gpus(ray_session, name):
    """NCCL reduces CUDA tensors only: every reduction (gradients, statistics, HATRPO's
    products, gathered critic states) must run on the learner's device."""
    algo = _gpu_config(name).learners(num_learners=2, num_gpus_per_learner=1).build_algo()
    try:
        for _ in range(3):
            algo.train()
        assert _devices(algo) == [{"cuda"}, {"cuda"}]
    finally:
        algo.stop()
