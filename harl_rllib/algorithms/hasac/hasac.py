"""HASAC: heterogeneous-agent soft actor-critic (Liu et al., ICLR 2024), the maximum-entropy
member of HARL's off-policy family.

Stochastic actors (squashed Gaussian for Box actions, categorical for Discrete), a twin
soft Q critic whose targets subtract α · Σⱼ log πʲ(aʲ'|oʲ') at the next state, and the
sequential update: each agent in a random order minimizes E[α log π − Q(s, a)], with the
earlier agents' actions resampled from their updated policies. α is fixed (HARL's
default) or tuned per agent towards a target entropy (`auto_alpha`).
"""

from __future__ import annotations

from harl_rllib.core.off_policy_algorithm import HAOffPolicyAlgorithm
from harl_rllib.core.off_policy_config import HAOffPolicyConfig
from harl_rllib.core.off_policy_modules import OFF_POLICY_ACTOR_DEFAULTS, SoftActorTorchRLModule


class HASACConfig(HAOffPolicyConfig):
    """HARL's hasac.yaml."""

    actor_module_class = SoftActorTorchRLModule

    def __init__(self, algo_class=None) -> None:
        super().__init__(algo_class=algo_class or HASAC)
        self.critic_lr = 5e-4
        self.n_step = 20
        self.policy_freq = 1
        self.use_valuenorm = True
        self.use_huber_loss = True
        self.use_policy_active_masks = True
        self.actor_model = dict(OFF_POLICY_ACTOR_DEFAULTS)  # [256, 256]
        self.critic_hidden_sizes = [256, 256]
        self.num_envs_per_env_runner = 20

    def get_default_learner_class(self):
        from harl_rllib.algorithms.hasac.torch.hasac_torch_learner import HASACTorchLearner

        return HASACTorchLearner


class HASAC(HAOffPolicyAlgorithm):
    @classmethod
    def get_default_config(cls) -> HASACConfig:
        return HASACConfig()
