"""`HAOffPolicyTorchLearner`: replay, the critic's TD step and the sequential actor update,
written once for HADDPG, HATD3, HASAC, MADDPG and MATD3.

Each `update()` call gets the iteration's episodes, adds their team transitions to this
learner's replay buffer, then makes `num_updates` gradient updates (HARL's
`OffPolicyHARunner.train`):

    critic_step(batch)                            # TD targets from target networks
    every policy_freq-th update:
        a^j ← current actor outputs for all j     # HA: not the buffer's actions
        for agent i_m in the driver's random order:
            a^{i_m} ← π^{i_m}(o)  (with gradient)
            maximize Q(s, a¹..aⁿ)  (HASAC: Q − α log π)
            a^{i_m} ← π^{i_m}(o)  after its step   # the sequential substitution
        Polyak-update the targets

With `sequential_update=False` (MADDPG/MATD3) every agent trains against the others'
actions from the replay buffer and nothing is substituted, as the reference's
`OffPolicyMARunner` and the original MADDPG do.

Subclasses implement `actor_actions` (what agent i plays in the actor update, with
log π for HASAC), `next_actions` (the target policy for TD targets) and the
critic/actor losses' temperature terms.

Several learners (data-parallel): the replay buffer is replicated, not sharded. Every learner
stores every transition (HAOffPolicyAlgorithm.shard_samples hands each the whole iteration),
so every buffer and its sampling RNG stay identical; each update draws one global batch of
`train_batch_size_per_learner` × learners rows, of which learner k trains on the k-th slice,
with the noise of those rows (`row_noise`: one stream drawn for the global batch), and the
gradients, the ValueNorm statistics and HASAC's temperatures are reduced over learners. So
two learners with batch B take the step one learner takes with batch 2B, up to float
summation order, and RLlib's checkpoint of the first learner holds the whole buffer. The
price: every learner holds the whole buffer in memory (it is off-policy data: a few GB at
HARL's 1M transitions on image-free tasks), against a sharded buffer whose per-learner
samples would not match one learner's and whose shards RLlib's checkpoint would not save.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import tree
from ray.rllib.core.columns import Columns
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    NUM_ENV_STEPS_TRAINED,
    NUM_ENV_STEPS_TRAINED_LIFETIME,
    NUM_MODULE_STEPS_TRAINED,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
)

from harl_rllib.core.critic import CRITIC_MODULE_ID, STATE
from harl_rllib.core.fragments import ALIVE
from harl_rllib.core.learner import TeamTorchLearner
from harl_rllib.core.off_policy_modules import encode_actions, polyak_update, standard_noise
from harl_rllib.core.replay import (
    DISCOUNT,
    NEXT_OBS,
    NEXT_STATE,
    REWARD,
    TERMINATED,
    TeamReplayBuffer,
    episode_transitions,
    rollout_transitions,
)
from harl_rllib.sampling.rollout import TeamRollout

REPLAY = "harl_replay"
TOTAL_IT = "harl_total_it"


class HAOffPolicyTorchLearner(TeamTorchLearner):
    """The shared off-policy learner (see module doc)."""

    def build(self) -> None:
        super().build()
        cfg = self.config
        self.agents = list(cfg.get_team_spec().agents)
        self.action_spaces = cfg.get_team_spec().action_spaces
        self.buffer = TeamReplayBuffer(cfg.buffer_size, cfg.n_step, cfg.gamma, seed=self.seed)
        self.total_it = 0
        # Introspection for tests: the joint action each agent's actor loss handed the critic.
        self.last_joint_actions: dict[str, torch.Tensor] = {}
        self.last_order: list[str] = []

    # ---- checkpoint: the update counter (TD3's delay) and the buffer's RNG ----------

    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component(TOTAL_IT, components, not_components):
            state[TOTAL_IT] = self.total_it
        if self._check_component(REPLAY, components, not_components):
            if self.config.store_buffer_in_checkpoints:
                state[REPLAY] = {"buffer": self.buffer.get_state()}
            else:
                state[REPLAY] = {"rng": self.buffer.rng.bit_generator.state}
        return state

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if TOTAL_IT in state:
            self.total_it = int(state[TOTAL_IT])
        if REPLAY in state:
            if "buffer" in state[REPLAY]:
                self.buffer.set_state(state[REPLAY]["buffer"])
            else:
                self.buffer.rng.bit_generator.state = state[REPLAY]["rng"]

    # ---- the update -----------------------------------------------------------------

    def update(
        self,
        batch=None,
        batches=None,
        batch_refs=None,
        episodes=None,
        episodes_refs=None,
        data_iterators=None,
        training_data=None,
        *,
        timesteps: dict | None = None,
        num_updates: int = 0,
        agent_orders: Sequence[Sequence[str]] | None = None,
        _no_metrics_reduce: bool = False,
        **kwargs,
    ):
        """Store the episodes' transitions, then make `num_updates` updates (module doc)."""
        self._check_is_built()
        self.before_gradient_based_update(timesteps=timesteps or {})
        self._weights_seq_no += 1
        samples = self.episodes_of(episodes or [], episodes_refs, training_data) or []
        if samples and isinstance(samples[0], TeamRollout):
            self.add_rollouts(samples)
        else:
            self.add_episodes(samples)
        if len(self.buffer) < self.config.train_batch_size_per_learner * self.world_size:
            num_updates = 0  # e.g. right after restoring a checkpoint: the buffer refills first
        for u in range(num_updates):
            order = list(agent_orders[u]) if agent_orders else list(self.agents)
            self.update_once(self.sample_batch(), order)
        if num_updates:
            n = num_updates * self.config.train_batch_size_per_learner
            for key, reduce in ((NUM_MODULE_STEPS_TRAINED, "sum"), (NUM_MODULE_STEPS_TRAINED_LIFETIME, "lifetime_sum")):
                self.metrics.log_value((ALL_MODULES, key), n * len(self.agents), reduce=reduce)
            self.metrics.log_value((ALL_MODULES, NUM_ENV_STEPS_TRAINED), n, reduce="sum")
            self.metrics.log_value((ALL_MODULES, NUM_ENV_STEPS_TRAINED_LIFETIME), n, reduce="lifetime_sum")
        self.metrics.log_value((ALL_MODULES, "replay_size"), len(self.buffer), window=1)
        self.log_update_means()
        self.after_gradient_based_update(timesteps=timesteps or {})
        if not _no_metrics_reduce:
            return self.metrics.reduce()

    def add_rollouts(self, rollouts: Sequence[TeamRollout]) -> None:
        """Store team rollouts' transitions, episode piece by episode piece."""
        running = set()
        for rollout in rollouts:
            for rows, episode_id, done in rollout_transitions(rollout, self.config.state_type):
                self.buffer.add(rows, episode_id, done)
                if not done:
                    running.add(episode_id)
        self.buffer.forget(running)

    def add_episodes(self, episodes: Sequence[Any]) -> None:
        has_state = self.config.get_team_spec().has_state
        for ep in episodes:
            rows = episode_transitions(ep, self.agents, has_state, self.config.state_type)
            if rows is not None:
                self.buffer.add(rows, ep.id_, ep.is_done)
        self.buffer.forget({ep.id_ for ep in episodes if not ep.is_done})

    def sample_batch(self) -> dict[str, Any]:
        """This learner's slice of the global replay batch (module doc), as tensors on its device."""
        n = self.config.train_batch_size_per_learner
        np_batch = self.buffer.sample(n * self.world_size)
        if self.world_size > 1:
            np_batch = tree.map_structure(lambda x: x[self.rank * n : (self.rank + 1) * n], np_batch)
        return _to_tensors(np_batch, self._device)

    def row_noise(self, like: torch.Tensor, kind: str = "normal") -> torch.Tensor:
        """Noise shaped like `like` (rows first) for this learner's rows: drawn for the global
        batch from the learner's checkpointed generator (the same stream on every learner), and
        sliced as `sample_batch` slices the rows. "normal": N(0, 1); "gumbel": Gumbel(0, 1)."""
        n = like.shape[0]
        noise = standard_noise((n * self.world_size, *like.shape[1:]), kind, generator=self._generator)
        return noise[self.rank * n : (self.rank + 1) * n].to(device=like.device, dtype=like.dtype)

    def update_once(self, batch: dict[str, Any], order: Sequence[str]) -> None:
        self.total_it += 1
        self.critic_step(batch)
        if self.total_it % self.config.policy_freq == 0:
            self.train_actors(batch, order)
            self.update_targets()

    # ---- the critic -------------------------------------------------------------------

    def joint(self, actions: dict[str, torch.Tensor]) -> torch.Tensor:
        """Agents' actions, in team order, as the critic's joint-action input."""
        return torch.cat([encode_actions(actions[a], self.action_spaces[a]) for a in self.agents], dim=-1)

    def module_of(self, aid: str):
        return self.module[self.config.module_for(aid)].unwrapped()

    def next_actions(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Every agent's action at the bootstrap state, and the entropy term to subtract
        from the target Q (None: no entropy term)."""
        raise NotImplementedError

    # ---- state streams: EP one per transition, FP one per agent ------------------------
    # FP (HARL's OffPolicyBufferFP and its runner): the critic sees every agent's own state
    # with the same joint action, and learns each agent's own reward; its rows are the agents'
    # rows one after the other (agent-major, as HARL concatenates them).

    @property
    def num_streams(self) -> int:
        return len(self.agents) if self.config.state_type == "FP" else 1

    def per_stream(self, x: torch.Tensor) -> torch.Tensor:
        """FP: (B, n, ...) → (n·B, ...), agent-major. EP: as it is."""
        return x if self.num_streams == 1 else x.transpose(0, 1).reshape(-1, *x.shape[2:])

    def tiled(self, x: torch.Tensor) -> torch.Tensor:
        """FP: (B, ...) → (n·B, ...), the same rows for every agent's stream. EP: as it is."""
        return x if self.num_streams == 1 else x.repeat(self.num_streams, *[1] * (x.dim() - 1))

    def td_targets(self, batch: dict[str, Any]) -> torch.Tensor:
        """r⁽ⁿ⁾ + γⁿ (1 − terminated) · (min over target Qs − entropy term), in return space,
        one per row and state stream."""
        critic = self.module[CRITIC_MODULE_ID].unwrapped()
        with torch.no_grad():
            nxt, entropy_term = self.next_actions(batch)
            qs = critic.q_values(self.per_stream(batch[NEXT_STATE]), self.tiled(self.joint(nxt)), target=True)
            next_q = critic.denormalize(torch.min(torch.stack(qs), dim=0).values)
            if entropy_term is not None:
                next_q = next_q - self.tiled(entropy_term)
            not_done = self.tiled(batch[DISCOUNT] * (1.0 - batch[TERMINATED]))
            return self.per_stream(batch[REWARD]) + not_done * next_q

    def critic_step(self, batch: dict[str, Any]) -> None:
        critic = self.module[CRITIC_MODULE_ID].unwrapped()
        targets = self.td_targets(batch)
        if critic.value_norm is not None:
            critic.value_norm.update(targets, self.all_sum if self.world_size > 1 else None)
            targets = critic.value_norm.normalize(targets)
        taken = self.tiled(self.joint({a: batch[a][Columns.ACTIONS] for a in self.agents}))
        loss = 0.0
        for q in critic.q_values(self.per_stream(batch[STATE]), taken):
            if self.config.use_huber_loss:
                loss = loss + F.huber_loss(q, targets, delta=self.config.huber_delta)
            else:
                loss = loss + F.mse_loss(q, targets)
        norm = self.gradient_step(CRITIC_MODULE_ID, loss)
        self.log_actor_metrics(CRITIC_MODULE_ID, critic_loss=float(loss.detach()), critic_grad_norm=norm)
        self.log_actor_metrics(CRITIC_MODULE_ID, q_target_mean=float(targets.mean()))

    # ---- the actors -------------------------------------------------------------------

    def actor_actions(self, aid: str, obs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Agent `aid`'s action for the actor update (differentiable) and its log π (HASAC)."""
        raise NotImplementedError

    def actor_loss(self, aid: str, q: torch.Tensor, logp: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        """−Q averaged over the agent's alive rows (HARL's `use_policy_active_masks`; without
        it the mask is all ones)."""
        return -(q * mask).sum() / mask.sum().clamp(min=1.0)

    def after_actor_step(self, aid: str, logp: torch.Tensor | None, mask: torch.Tensor) -> None:
        """Hook after agent `aid`'s step (HASAC tunes its temperature here)."""

    def train_actors(self, batch: dict[str, Any], order: Sequence[str]) -> None:
        critic = self.module[CRITIC_MODULE_ID].unwrapped()
        self.last_order, self.last_joint_actions = list(order), {}
        if self.config.sequential_update:  # HA: the others' current policies, substituted below
            with torch.no_grad():
                actions = {a: self.actor_actions(a, batch[a][Columns.OBS])[0] for a in self.agents}
        else:  # MA: the others' sampled actions (the critic step's joint action)
            actions = {a: batch[a][Columns.ACTIONS] for a in self.agents}
        critic.qs.requires_grad_(False)  # the actors' steps must not touch the critic
        try:
            for aid in order:
                mid = self.config.module_for(aid)
                obs = batch[aid][Columns.OBS]
                mask = batch[aid][ALIVE] if self.config.use_policy_active_masks else torch.ones_like(batch[aid][ALIVE])
                own, logp = self.actor_actions(aid, obs)
                joint = self.joint({**actions, aid: own})
                self.last_joint_actions[aid] = joint.detach().clone()
                # FP: the mean of the agents' state streams' Q (HARL's mean over the tiled rows).
                q = self.actor_q(critic, self.per_stream(batch[STATE]), self.tiled(joint))
                q = q.reshape(self.num_streams, -1).mean(0)
                loss = self.actor_loss(aid, q, logp, mask)
                norm = self.gradient_step(mid, loss, weight=mask.sum())
                self.log_actor_metrics(mid, actor_loss=float(loss.detach()), actor_grad_norm=norm)
                self.after_actor_step(aid, logp, mask)
                if self.config.sequential_update and aid != order[-1]:  # the last one's is not read
                    with torch.no_grad():
                        actions[aid] = self.actor_actions(aid, obs)[0]
        finally:
            critic.qs.requires_grad_(True)

    def actor_q(self, critic, state: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        """The Q the actors maximize, in return space: Q1 for DDPG/TD3 (HARL's `get_values`)."""
        return critic.denormalize(critic.q_values(state, joint, first=1)[0])

    def update_targets(self) -> None:
        tau = self.config.tau
        critic = self.module[CRITIC_MODULE_ID].unwrapped()
        polyak_update(critic.target_qs, critic.qs, tau)
        for mid in self.config.actor_module_ids():
            module = self.module[mid].unwrapped()
            if hasattr(module, "target_pi"):
                polyak_update(module.target_pi, module.pi, tau)


def _to_tensors(x: Any, device) -> Any:
    if isinstance(x, dict):
        return {k: _to_tensors(v, device) for k, v in x.items()}
    return torch.as_tensor(np.asarray(x), device=device)


__all__ = ["HAOffPolicyTorchLearner", "NEXT_OBS"]
