"""HAD3QN: heterogeneous-agent dueling double deep Q-network (HARL), the off-policy family's
member for discrete actions.

Each agent has a dueling Q-network over its own actions (it acts ε-greedily on it); a
centralized dueling Q-network values every joint action of the team from the global state.
The critic learns double-Q targets (the agents' target networks pick the next actions, the
target critic values them); the agents, in a random order, regress their own Q onto the
critic's value of the current joint action, each then replaced in the joint action by its
best response under the critic (the sequential update, torch/had3qn_torch_learner.py).
"""

from __future__ import annotations

import gymnasium as gym
from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from typing_extensions import Self

from harl_rllib.algorithms.had3qn.torch.had3qn_modules import (
    DUELING_DEFAULTS,
    EPSILON,
    DuelingJointQCriticTorchRLModule,
    DuelingQActorTorchRLModule,
    joint_space_size,
)
from harl_rllib.core.off_policy_algorithm import HAOffPolicyAlgorithm
from harl_rllib.core.off_policy_config import HAOffPolicyConfig

# The critic has one output per joint action (Πᵢ |Aⁱ|): beyond this it does not fit a
# network (10 SMAC agents with 15 actions would need 15¹⁰ outputs).
MAX_JOINT_ACTIONS = 65_536


class HAD3QNConfig(HAOffPolicyConfig):
    """HARL's had3qn.yaml (also its tuned MPE simple_spread / speaker_listener settings)."""

    actor_module_class = DuelingQActorTorchRLModule

    def __init__(self, algo_class=None) -> None:
        super().__init__(algo_class=algo_class or HAD3QN)
        self.gamma = 0.95
        self.policy_freq = 1
        self.num_q = 1
        self.epsilon = EPSILON
        self.actor_model = dict(DUELING_DEFAULTS)
        self.critic_hidden_sizes = [128, 128]
        self.num_envs_per_env_runner = 20

    def training(self, *, epsilon: float = NotProvided, **kwargs) -> Self:
        """As the off-policy family's, plus `epsilon`: the chance that an env runner's call acts
        uniformly at random (for all its envs at once, as HARL) instead of greedily.
        `actor_model` takes `hidden_sizes`, `activation`, `dueling_v_hidden_sizes`,
        `dueling_a_hidden_sizes` and `dueling_activation` (HARL's model settings), used by
        the actors and, with `critic_hidden_sizes` as its base, by the critic."""
        super().training(**kwargs)
        self._set_provided(epsilon=epsilon)
        return self

    def actor_model_config(self) -> dict:
        return {**self.actor_model, "epsilon": self.epsilon, "warmup_steps": self.warmup_steps}

    def critic_spec(self) -> RLModuleSpec:
        team = self.get_team_spec()
        return self.central_critic_spec(
            DuelingJointQCriticTorchRLModule,
            {
                **self.actor_model,
                "hidden_sizes": list(self.critic_hidden_sizes),
                "action_dims": [int(team.action_spaces[a].n) for a in team.agents],
            },
        )

    def get_default_learner_class(self):
        from harl_rllib.algorithms.had3qn.torch.had3qn_torch_learner import HAD3QNTorchLearner

        return HAD3QNTorchLearner

    def _validate_ha_settings(self) -> None:
        if not isinstance(self.epsilon, (int, float)) or not 0.0 <= self.epsilon <= 1.0:
            self._value_error(f"`epsilon` must be in [0, 1]; got {self.epsilon!r}")
        if self.use_valuenorm:
            self._value_error("HAD3QN's critic has no value normalization (use_valuenorm=False).")
        if self.state_type != "EP":
            # Its actors regress onto one joint-action value per row: one state per row.
            self._value_error("HAD3QN supports state_type='EP' only.")
        super()._validate_ha_settings()
        team = self.get_team_spec()
        for aid, space in team.action_spaces.items():
            if not isinstance(space, gym.spaces.Discrete):
                self._value_error(
                    f"HAD3QN needs discrete actions, but agent {aid!r} has {space}; HATD3 or HASAC handle "
                    "continuous ones."
                )
        size = joint_space_size([team.action_spaces[a] for a in team.agents])
        if size > MAX_JOINT_ACTIONS:
            self._value_error(
                f"HAD3QN's critic has one output per joint action: {size} for this team, more than "
                f"{MAX_JOINT_ACTIONS}. Use HASAC (or the on-policy family) for teams this large."
            )


class HAD3QN(HAOffPolicyAlgorithm):
    @classmethod
    def get_default_config(cls) -> HAD3QNConfig:
        return HAD3QNConfig()
