"""HADDPG: heterogeneous-agent DDPG (HARL paper, the deterministic member of HAML).

A centralized Q(s, a¹..aⁿ) with a target copy; each update trains the critic on
r + γ Q'(s', μ'(o')), then (every update) the agents in a random order, each maximizing
Q with the earlier agents' actions already replaced by their updated outputs.
"""

from __future__ import annotations

from harl_rllib.core.off_policy_algorithm import HAOffPolicyAlgorithm
from harl_rllib.core.off_policy_config import HAOffPolicyConfig


class HADDPGConfig(HAOffPolicyConfig):
    """HARL's haddpg.yaml: hatd3.yaml without twin critics, smoothing or delay."""

    def __init__(self, algo_class=None) -> None:
        super().__init__(algo_class=algo_class or HADDPG)
        self.num_q = 1
        self.policy_freq = 1

    def get_default_learner_class(self):
        from harl_rllib.algorithms.haddpg.torch.haddpg_torch_learner import HADDPGTorchLearner

        return HADDPGTorchLearner


class HADDPG(HAOffPolicyAlgorithm):
    @classmethod
    def get_default_config(cls) -> HADDPGConfig:
        return HADDPGConfig()
