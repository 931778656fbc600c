"""HAD3QN's update (HARL's `OffPolicyHARunner.train` for had3qn, `DiscreteQCritic`):

    critic:  Q(s, a) ← r⁽ⁿ⁾ + γⁿ (1 − terminated) Q'(s', a'),  a'ⁱ = argmax Q'ⁱ(o'ⁱ, ·)
             (each agent's target network picks, the target critic evaluates: double Q)
    actors:  aʲ ← argmax Qʲ(oʲ, ·) for every j
             for agent i_m in a random order:
                 minimize (Q^{i_m}(o, a^{i_m}) − Q(s, a¹..aⁿ))²
                 a^{i_m} ← argmax_b Q(s, a¹..b..aⁿ)      # the sequential substitution
    targets: Polyak

The substitution is the critic's best response of agent i_m to the others' current actions,
not its updated network's argmax: each later agent regresses onto the joint action's value
with the earlier agents' improved actions in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from ray.rllib.core.columns import Columns

from harl_rllib.core.actor import ACTION_MASK
from harl_rllib.core.critic import CRITIC_MODULE_ID, STATE
from harl_rllib.core.fragments import ALIVE
from harl_rllib.core.off_policy_learner import NEXT_OBS, HAOffPolicyTorchLearner


class HAD3QNTorchLearner(HAOffPolicyTorchLearner):
    def build(self) -> None:
        super().build()
        dims = [int(self.action_spaces[a].n) for a in self.agents]
        strides = [1]
        for n in dims[:-1]:
            strides.append(strides[-1] * n)
        self.action_dims = dict(zip(self.agents, dims, strict=True))
        self.strides = dict(zip(self.agents, strides, strict=True))

    def joint(self, actions: dict[str, torch.Tensor]) -> torch.Tensor:
        """The joint index Σᵢ aⁱ · strideⁱ (B,) of the agents' discrete actions."""
        return sum(actions[a].long().reshape(-1) * self.strides[a] for a in self.agents)

    def next_actions(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], None]:
        return {a: self.module_of(a).greedy(batch[a][NEXT_OBS], target=True) for a in self.agents}, None

    def train_actors(self, batch: dict[str, Any], order: Sequence[str]) -> None:
        critic = self.module[CRITIC_MODULE_ID].unwrapped()
        self.last_order, self.last_joint_actions = list(order), {}
        with torch.no_grad():
            actions = {a: self.module_of(a).greedy(batch[a][Columns.OBS]) for a in self.agents}
            all_q = critic.all_q(batch[STATE])  # (B, Πᵢ|Aⁱ|), fixed through the loop
        for aid in order:
            mid = self.config.module_for(aid)
            module = self.module_of(aid)
            joint = self.joint(actions)
            self.last_joint_actions[aid] = joint.clone()
            target = all_q.gather(1, joint[:, None]).squeeze(1)
            own = module.q(batch[aid][Columns.OBS]).gather(1, actions[aid].long()[:, None]).squeeze(1)
            if self.config.use_policy_active_masks:
                mask = batch[aid][ALIVE]
                loss = ((own - target) ** 2 * mask).sum() / mask.sum().clamp(min=1.0)
                weight = mask.sum()
            else:
                loss, weight = F.mse_loss(own, target), 1.0
            norm = self.gradient_step(mid, loss, weight=weight)
            self.log_actor_metrics(mid, actor_loss=float(loss.detach()), actor_grad_norm=norm)
            actions[aid] = self.best_response(aid, actions, all_q, batch[aid][Columns.OBS])

    def best_response(self, aid: str, actions: dict[str, torch.Tensor], all_q: torch.Tensor, obs: Any) -> torch.Tensor:
        """argmax_b Q(s, a¹..b..aⁿ): agent `aid`'s best action under the critic, the others'
        fixed (its available actions only; HARL's env for HAD3QN has no masks)."""
        others = self.joint({**actions, aid: torch.zeros_like(actions[aid])})
        n = self.action_dims[aid]
        idx = others[:, None] + self.strides[aid] * torch.arange(n, device=others.device)[None]
        q = all_q.gather(1, idx)
        if isinstance(obs, dict) and ACTION_MASK in obs:
            q = q.masked_fill(obs[ACTION_MASK] == 0, float("-inf"))
        return q.argmax(dim=-1)


__all__ = ["HAD3QNTorchLearner"]
