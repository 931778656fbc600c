"""HASAC's soft losses and temperatures (HARL's `OffPolicyHARunner.train`, hasac branch).

Temperatures: with `auto_alpha`, one log α per agent, trained after that agent's step on
−log α · (log π + H̄ᵢ) (H̄ᵢ = −dim for Box; 0.98 · log n for Discrete, see
`discrete_target_entropy`), and the critic's own α for the joint entropy in the targets,
trained after all agents on the summed log π against Σ H̄ᵢ (as HARL). Without it, α is
`alpha` everywhere.

Where HARL differs: its actor loss reads the critic's output in ValueNorm's normalized
space while α log π is in reward units; here Q is denormalized first, so α means the same
with and without value normalization.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from harl_rllib.core.off_policy_learner import NEXT_OBS, HAOffPolicyTorchLearner
from harl_rllib.core.off_policy_modules import discrete_target_entropy

LOG_ALPHA = "harl_log_alpha"


def target_entropy(space: gym.Space) -> float:
    if isinstance(space, gym.spaces.Discrete):
        return discrete_target_entropy(int(space.n))
    return -float(np.prod(space.shape))


class HASACTorchLearner(HAOffPolicyTorchLearner):
    def build(self) -> None:
        super().build()
        cfg = self.config
        self.target_entropy = {a: target_entropy(self.action_spaces[a]) for a in self.agents}
        keys = [*self.agents, "__team__"]
        self.log_alpha = {k: torch.zeros(1, requires_grad=True, device=self._device) for k in keys}
        self.alpha_optim = {k: torch.optim.Adam([self.log_alpha[k]], lr=cfg.alpha_lr) for k in keys}
        self._step_logps: dict[str, torch.Tensor] = {}

    def alpha(self, key: str) -> torch.Tensor | float:
        """Agent `key`'s temperature, or the critic's ("__team__")."""
        return self.log_alpha[key].detach().exp() if self.config.auto_alpha else self.config.alpha

    def sample(self, aid: str, obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Agent `aid`'s reparameterized action and log π, with this learner's rows' noise."""
        module = self.module_of(aid)
        return module.sample_with_logp(obs, noise=self.row_noise)

    def actor_actions(self, aid: str, obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sample(aid, obs)

    def next_actions(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        actions, logps = {}, []
        for a in self.agents:
            actions[a], logp = self.sample(a, batch[a][NEXT_OBS])
            logps.append(logp)
        return actions, self.alpha("__team__") * torch.stack(logps).sum(0)

    def actor_q(self, critic, state: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        return critic.denormalize(torch.min(torch.stack(critic.q_values(state, joint)), dim=0).values)

    def actor_loss(self, aid: str, q: torch.Tensor, logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return -((q - self.alpha(aid) * logp) * mask).sum() / mask.sum().clamp(min=1.0)

    def after_actor_step(self, aid: str, logp: torch.Tensor, mask: torch.Tensor) -> None:
        self._step_logps[aid] = logp.detach()
        if self.config.auto_alpha:
            self._alpha_step(aid, logp.detach(), self.target_entropy[aid])
        self.log_actor_metrics(
            self.config.module_for(aid), alpha=float(self.alpha(aid)), entropy=float(-logp.detach().mean())
        )

    def _alpha_step(self, key: str, logp: torch.Tensor, target: float) -> None:
        loss = -(self.log_alpha[key] * (logp + target)).mean()
        self.alpha_optim[key].zero_grad()
        loss.backward()
        if self.world_size > 1:  # the mean over every learner's rows (the same count on each)
            self.log_alpha[key].grad = self.all_sum(self.log_alpha[key].grad) / self.world_size
        self.alpha_optim[key].step()

    def train_actors(self, batch: dict[str, Any], order: Sequence[str]) -> None:
        self._step_logps = {}
        super().train_actors(batch, order)
        if self.config.auto_alpha:
            joint = torch.stack([self._step_logps[a] for a in self.agents]).sum(0)
            self._alpha_step("__team__", joint, sum(self.target_entropy.values()))

    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component(LOG_ALPHA, components, not_components):
            state[LOG_ALPHA] = {
                k: {"log_alpha": v.detach().cpu().numpy(), "optim": self.alpha_optim[k].state_dict()}
                for k, v in self.log_alpha.items()
            }
        return state

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        for k, saved in (state.get(LOG_ALPHA) or {}).items():
            with torch.no_grad():
                self.log_alpha[k].copy_(torch.as_tensor(saved["log_alpha"]))
            self.alpha_optim[k].load_state_dict(saved["optim"])
