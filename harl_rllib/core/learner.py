"""`HATorchLearner`: the sequential update, written once for the on-policy HA family.

RLlib's `TorchLearner._update` sums every module's loss into one backward pass, which
cannot express "agent i trains on what agents before it have already done". So
`update()` is overridden: build the team batch once (the learner connector), then

    M ← 1
    for agent i_m in the iteration's order (drawn by the driver, same on every learner):
        actor_step(i_m, A, M)                   # each algorithm's own step
        M ← M · π_new(a|o) / π_old(a|o)         # detached, whole batch
    critic_step()

Subclasses implement only `actor_step` (HAPPO: clipped, HAA2C: unclipped, HATRPO:
natural gradient).

Recurrent policies (see core/fragments.py for the layout): the same loop on the sequence
layout. Every log-probability (old, new, the factor's, the loss's) comes from
`dist_inputs`, which runs the actor's GRU over whole sequences from their recorded
`state_in`, so M and the ratios are computed on the same sequences in the same row order
as the loss; minibatches are whole sequences; padding rows have loss_mask 0 and weigh
nothing in any loss, mean or statistic.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import tree
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.learner.training_data import TrainingData
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    NUM_ENV_STEPS_TRAINED,
    NUM_ENV_STEPS_TRAINED_LIFETIME,
    NUM_MODULE_STEPS_TRAINED,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
)

from harl_rllib.core.actor import HIDDEN
from harl_rllib.core.advantages import standardize_masked
from harl_rllib.core.critic import CRITIC_MODULE_ID, STATE, VALUES
from harl_rllib.core.fragments import ADVANTAGES, ALIVE, LOSS_MASK, STATE_IN, VALUE_TARGETS, RecurrentBatcher
from harl_rllib.core.losses import masked_mean, value_loss
from harl_rllib.core.team_batch import TeamBatchBuilder
from harl_rllib.sampling.rollout import TeamRollout, rollout_fragments, rollout_team_batch

FACTOR_MEAN = "factor_mean"
NONFINITE_SKIPPED = "num_nonfinite_updates_skipped"
MINIBATCH_RNG = "harl_minibatch_rng"
CRITIC_CARRY = "harl_critic_carry"
UPDATE_POSITION = "update_position"


class NonFiniteUpdateError(FloatingPointError):
    """Too many gradient steps in a row had a non-finite loss or gradient."""


def minibatch_indices(
    n: int, minibatch_size: int | None, generator: torch.Generator, count: int | None = None
) -> Iterator[torch.Tensor]:
    """HARL's feed-forward sampler: one permutation, ⌊n / size⌋ minibatches (or `count`,
    when data-parallel learners must take the same number of steps)."""
    if minibatch_size is None or minibatch_size >= n:
        yield torch.arange(n)
        return
    perm = torch.randperm(n, generator=generator)
    for i in range(n // minibatch_size if count is None else count):
        yield perm[i * minibatch_size : (i + 1) * minibatch_size]


def index_rows(data: Any, idx: torch.Tensor) -> Any:
    return tree.map_structure(lambda x: x[idx], data)


def sequence_rows(seq_idx: torch.Tensor, length: int) -> torch.Tensor:
    """The row indices of whole sequences of `length` rows, in sequence order."""
    return (seq_idx[:, None] * length + torch.arange(length)).reshape(-1)


def index_batch(data: dict, idx: torch.Tensor, seq_len: int | None) -> tuple[dict, torch.Tensor]:
    """(sub-batch, its row indices). Feed-forward: idx are rows. Recurrent: idx are sequences;
    `state_in` is indexed by sequence, every other column by the sequences' rows."""
    if seq_len is None:
        return index_rows(data, idx), idx
    rows = sequence_rows(idx, seq_len)
    sub = {k: (v[idx] if k == STATE_IN else index_rows(v, rows)) for k, v in data.items()}
    return sub, rows


class TeamTorchLearner(TorchLearner):
    """What the on- and off-policy HA learners share: per-module Adam (critic with
    `critic_lr`), one gradient step at a time (RLlib's one-backward-pass `_update` cannot
    train agents in turn), gradients reduced over data-parallel learners, and a seeded
    torch generator that is part of the checkpoint."""

    def build(self) -> None:
        super().build()
        # Streams every learner must draw alike (minibatches, the off-policy noise and replay
        # RNG) start from one seed: the config's, or, unseeded, one drawn by the first learner.
        seed = self.config.seed
        if seed is None:
            seed = self.all_gather_object(int(np.random.SeedSequence().entropy % 2**63))[0]
        self.seed = int(seed)
        self._generator = torch.Generator().manual_seed(self.seed)
        self._step_metrics: dict[tuple[str, str], list[float]] = {}

    # ---- data-parallel learners (num_learners >= 2) -------------------------------------
    # RLlib wraps modules in DDP, but the sequential update trains one module at a time
    # through the unwrapped modules, so the learners are kept in step here: gradients,
    # advantage statistics, ValueNorm statistics and minibatch counts are reduced over
    # all learners (each holds a shard of the iteration's episodes).

    @property
    def world_size(self) -> int:
        dist = torch.distributed
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @property
    def rank(self) -> int:
        dist = torch.distributed
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over learners (identity with one learner). On the learner's device: NCCL, the
        backend on GPUs, reduces CUDA tensors only."""
        if self.world_size > 1:
            t = t.detach().to(self._device, copy=True)
            torch.distributed.all_reduce(t)
        return t

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every learner's `obj`, in rank order ([obj] with one learner)."""
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    # The minibatch RNG is part of the learner's checkpoint state (exact resume).
    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component(MINIBATCH_RNG, components, not_components):
            state[MINIBATCH_RNG] = self._generator.get_state()
        return state

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if MINIBATCH_RNG in state:
            self._generator.set_state(torch.as_tensor(state[MINIBATCH_RNG], dtype=torch.uint8))

    def configure_optimizers_for_module(self, module_id: str, config=None) -> None:
        """Adam with HARL's eps; the critic with `critic_lr`."""
        # Trained parameters only: target networks (off-policy) are frozen copies.
        params = [p for p in self.get_parameters(self._module[module_id]) if p.requires_grad]
        lr = self.config.critic_lr if module_id == CRITIC_MODULE_ID else self.config.lr
        optim = torch.optim.Adam(params, lr=lr, eps=self.config.opti_eps, weight_decay=self.config.weight_decay)
        self.register_optimizer(module_id=module_id, optimizer=optim, params=params, lr_or_lr_schedule=lr)

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        raise NotImplementedError(
            "HA learners do not use RLlib's one-backward-pass update; see `update()` and `actor_step()`."
        )

    def gradient_step(self, module_id: str, loss: torch.Tensor, weight: torch.Tensor | float = 1.0) -> float:
        """zero_grad → backward → clip grad norm (HARL's max_grad_norm) → Adam step.

        With several learners, `weight` is the loss's denominator here (rows it averages
        over): the gradients are combined as Σ wᵢ gᵢ / Σ wᵢ, the gradient of the mean over
        all learners' rows, before clipping, so every learner takes the same step.

        A loss over no rows (total weight 0: every row dead, or padding) takes no step, as HARL
        does not train an agent without alive rows: Adam's step on a zero gradient would still
        move the weights by its momentum."""
        optim = self.get_optimizer(module_id)
        params = [p for group in optim.param_groups for p in group["params"]]
        optim.zero_grad(set_to_none=True)
        w = torch.as_tensor(weight, dtype=torch.float32).detach().reshape(1)
        total = self.all_sum(w)[0] if self.world_size > 1 else w[0]
        if float(total) == 0.0:
            return 0.0
        loss.backward()
        self.reduce_gradients(params, w[0], total)
        if self.config.use_max_grad_norm:
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        else:
            norm = torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
        # The norm is of the reduced gradient, the same on every learner: they all skip together.
        if not (torch.isfinite(norm) and torch.isfinite(loss.detach())):
            optim.zero_grad(set_to_none=True)
            self.skip_nonfinite_update(module_id, float(loss.detach()), float(norm))
            return float(norm)
        optim.step()
        self._nonfinite_streak = 0
        return float(norm)

    _nonfinite_streak = 0

    def skip_nonfinite_update(self, module_id: str, loss: float, norm: float) -> None:
        """A gradient step with a non-finite loss or gradient is not applied, and counted
        (`num_nonfinite_updates_skipped`); `max_consecutive_nonfinite_updates` in a row stop
        training: the data or the settings are broken, and going on would only hide it."""
        self._nonfinite_streak += 1
        self.metrics.log_value((module_id, NONFINITE_SKIPPED), 1, reduce="sum")
        limit = self.config.max_consecutive_nonfinite_updates
        if self._nonfinite_streak >= limit:
            raise NonFiniteUpdateError(
                f"{self._nonfinite_streak} gradient steps in a row had a non-finite loss or gradient "
                f"(max_consecutive_nonfinite_updates={limit}; the last: module {module_id!r}, loss {loss}, "
                f"gradient norm {norm}); none of them was applied. Causes: NaN/inf in the env's rewards, "
                "observations or states (see `check_env_values`), or a learning rate too high."
            )

    def reduce_gradients(self, params: Sequence[torch.Tensor], weight: torch.Tensor, total: torch.Tensor) -> None:
        """Σ wᵢ gᵢ / Σ wᵢ over learners (`total` = Σ wᵢ), in place (no-op with one learner)."""
        if self.world_size == 1:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.mul_(weight / total)
            torch.distributed.all_reduce(p.grad)

    def episodes_of(self, episodes, episodes_refs, training_data: TrainingData | None) -> list:
        """The episodes of an `update()` call, however LearnerGroup passed them."""
        if training_data is None:
            training_data = TrainingData(episodes=episodes, episodes_refs=episodes_refs)
        training_data.validate()
        training_data.solve_refs()
        # Team rollouts for several learners come as one shard per learner (HAAlgorithm.update_learners).
        return training_data.episodes if training_data.episodes is not None else training_data.batch

    def log_actor_metrics(self, module_id: str, **values: float) -> None:
        """A gradient step's losses and norms, kept until the update ends (`log_update_means`):
        HARL reports each averaged over the update's steps (epochs × minibatches), not the last."""
        for key, value in values.items():
            self._step_metrics.setdefault((module_id, key), []).append(float(value))

    def log_update_means(self) -> None:
        """Log the mean of each value `log_actor_metrics` kept during this update."""
        for key, values in self._step_metrics.items():
            self.metrics.log_value(key, float(np.mean(values)), window=1)
        self._step_metrics = {}


class HATorchLearner(TeamTorchLearner):
    """The shared learner of HAPPO / HATRPO / HAA2C / MAPPO (see module doc)."""

    @property
    def seq_len(self) -> int | None:
        """Rows per training sequence when the policy is recurrent, else None."""
        return self.config.data_chunk_length if self.config.use_recurrent_policy else None

    def build(self) -> None:
        super().build()
        # Introspection for tests and debugging: the factor each agent trained with.
        self.last_factors: dict[str, torch.Tensor] = {}
        self.last_order: list[str] = []
        self.last_advantages: dict[str, torch.Tensor] = {}
        # Recurrent actors are batched by episode piece (core/fragments.py), with the critic's GRU
        # states carried from one iteration to the next: one batcher per learner, for team
        # rollouts and RLlib's episodes (the team batch builder's) alike; its carried states are
        # gathered over learners and are part of the checkpoint (CRITIC_CARRY).
        self._recurrent_batcher = None
        if self.seq_len:
            self._recurrent_batcher = RecurrentBatcher(
                agents=self.config.get_team_spec().agents,
                gamma=self.config.gamma,
                lambda_=self.config.lambda_,
                chunk_length=self.seq_len,
                device=self._device,
            )
            self._recurrent_batcher.gather = self.all_gather_object
            for connector in self._learner_connector.connectors if self._learner_connector else []:
                if isinstance(connector, TeamBatchBuilder):
                    connector.recurrent = self._recurrent_batcher

    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._recurrent_batcher is not None and self._check_component(CRITIC_CARRY, components, not_components):
            state[CRITIC_CARRY] = self._recurrent_batcher.get_state()
        return state

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if self._recurrent_batcher is not None and CRITIC_CARRY in state:
            self._recurrent_batcher.set_state(state[CRITIC_CARRY])

    def snapshot(self) -> dict[str, Any]:
        """The last update as numpy (order, advantages, factors, weights): for tests and
        debugging, e.g. `learner_group.foreach_learner(operator.methodcaller("snapshot"))`."""
        return {
            "order": list(self.last_order),
            "world_size": self.world_size,
            "advantages": {a: t.cpu().numpy() for a, t in self.last_advantages.items()},
            "factors": {a: t.cpu().numpy() for a, t in self.last_factors.items()},
            "weights": {
                mid: {k: v.detach().cpu().numpy() for k, v in self.module[mid].unwrapped().state_dict().items()}
                for mid in self.module.keys()
            },
        }

    # ---- the update -----------------------------------------------------------------

    def update(
        self,
        batch=None,
        batches=None,
        batch_refs=None,
        episodes=None,
        episodes_refs=None,
        data_iterators=None,
        training_data: TrainingData | None = None,
        *,
        timesteps: dict | None = None,
        agent_order: Sequence[str] | None = None,
        _no_metrics_reduce: bool = False,
        **kwargs,
    ):
        """One iteration of HA training on the given episodes (see module doc)."""
        self._check_is_built()
        self.before_gradient_based_update(timesteps=timesteps or {})
        episodes = self.episodes_of(episodes, episodes_refs, training_data)
        if episodes is None:
            raise ValueError("HA learners train from episodes (the team batch needs whole trajectories).")
        self._weights_seq_no += 1

        team = tree.map_structure(lambda x: torch.as_tensor(x, device=self._device), self.build_team_batch(episodes))
        agents = list(self.config.get_team_spec().agents)
        order = list(agent_order) if agent_order is not None else agents
        if sorted(order) != sorted(agents):
            raise ValueError(f"agent_order {order} is not a permutation of the team {agents}")

        self.train_actors(team, order)
        self.critic_step(team[CRITIC_MODULE_ID])
        self._log_counts(team, agents, sum(len(e) for e in episodes))
        self.log_update_means()
        self.after_gradient_based_update(timesteps=timesteps or {})
        if not _no_metrics_reduce:
            return self.metrics.reduce()

    def build_team_batch(self, samples: list) -> dict:
        """The team batch (numpy) of the env runners' samples: team rollouts (sampling/rollout.py)
        or RLlib's episodes (the team batch builder, core/team_batch.py)."""
        if samples and isinstance(samples[0], TeamRollout) and self._recurrent_batcher is not None:
            critic = self.module[CRITIC_MODULE_ID].unwrapped()
            spec = self.config.get_team_spec()
            fragments = rollout_fragments(samples, agents=spec.agents, state_type=self.config.state_type)
            return self._recurrent_batcher(critic, fragments, self.metrics)
        if samples and isinstance(samples[0], TeamRollout):
            return rollout_team_batch(
                samples,
                self.module[CRITIC_MODULE_ID].unwrapped(),
                agents=self.config.get_team_spec().agents,
                gamma=self.config.gamma,
                lambda_=self.config.lambda_,
                state_type=self.config.state_type,
                device=self._device,
            )
        return self._learner_connector(
            rl_module=self.module, batch={}, episodes=samples, shared_data={}, metrics=self.metrics
        )

    def normalization_groups(self, agents: Sequence[str]) -> list[list[str]]:
        """The agents whose advantages are standardized together, as HARL: all of them under FP;
        under EP each agent alone, except that agents sharing one actor in a simultaneous update
        (MAPPO's `share_param`) are standardized together, over all their alive rows (the
        reference's `share_param_train`)."""
        if self.config.state_type == "FP":
            return [list(agents)]
        if self.config.sequential_update:
            return [[a] for a in agents]
        by_module: dict[str, list[str]] = {}
        for a in agents:
            by_module.setdefault(self.config.module_for(a), []).append(a)
        return list(by_module.values())

    def advantages_for(self, team: dict, agents: Sequence[str]) -> dict[str, torch.Tensor]:
        """Standardized advantages per agent over the alive rows of its group
        (`normalization_groups`); over all learners' rows when there are several."""
        groups = self.normalization_groups(agents)
        if self.world_size > 1:
            return self._advantages_all_learners(team, groups)
        out = {}
        for group in groups:
            adv = np.concatenate([team[a][ADVANTAGES].cpu().numpy() for a in group])
            alive = np.concatenate([team[a][ALIVE].cpu().numpy() for a in group])
            norm = standardize_masked(adv, alive)
            n = len(team[group[0]][ADVANTAGES])
            for i, a in enumerate(group):
                out[a] = torch.as_tensor(norm[i * n : (i + 1) * n], device=self._device)
        return out

    def _advantages_all_learners(self, team: dict, groups: list[list[str]]) -> dict[str, torch.Tensor]:
        out = {}
        for group in groups:
            x = torch.cat([team[a][ADVANTAGES] for a in group]).double()
            m = torch.cat([team[a][ALIVE] for a in group]).double()
            s = self.all_sum(torch.stack([m.sum(), (m * x).sum(), (m * x * x).sum()]))
            mean = s[1] / s[0].clamp(min=1)
            std = (s[2] / s[0].clamp(min=1) - mean**2).clamp(min=0).sqrt()
            for a in group:
                out[a] = ((team[a][ADVANTAGES].double() - mean) / (std + 1e-5)).float()
        return out

    def train_actors(self, team: dict, order: Sequence[str]) -> None:
        """The sequential loop (HA algorithms) or the simultaneous one (MAPPO)."""
        advantages = self.advantages_for(team, order)
        self.last_order = list(order)
        self.last_factors = {}
        self.last_advantages = advantages
        if not self.config.sequential_update:
            # Simultaneous: every module trains once on its agents' rows, factor 1. (HAConfig's
            # minibatch bound counts these concatenated rows; change both together.)
            by_module: dict[str, list[str]] = {}
            for aid in order:
                if self.alive_anywhere(team[aid]):
                    by_module.setdefault(self.config.module_for(aid), []).append(aid)
            for mid, aids in by_module.items():
                data = tree.map_structure(lambda *xs: torch.cat(xs), *[team[a] for a in aids])
                adv = torch.cat([advantages[a] for a in aids])
                ones = torch.ones_like(adv)
                for a in aids:
                    self.last_factors[a] = torch.ones_like(advantages[a])
                self.actor_step(mid, data, adv, ones)
            return

        factor = torch.ones_like(advantages[order[0]])
        for position, aid in enumerate(order):
            mid = self.config.module_for(aid)
            data = team[aid]
            self.last_factors[aid] = factor.clone()
            self.metrics.log_value((mid, FACTOR_MEAN), factor.mean().item(), window=1)
            self.metrics.log_value((mid, UPDATE_POSITION), position, window=1)
            if not self.alive_anywhere(data):
                continue  # HARL trains no agent dead in every row; the factor passes on as it is
            with torch.no_grad():
                logp_old, _ = self.logp_entropy(mid, data)
            self.actor_step(mid, data, advantages[aid], factor)
            with torch.no_grad():
                logp_new, _ = self.logp_entropy(mid, data)
                factor = factor * torch.exp(logp_new - logp_old)

    def alive_anywhere(self, data: dict) -> bool:
        """Whether the agent is alive in any row of this iteration (on any learner)."""
        alive = data[ALIVE].sum().reshape(1).float()
        return float(self.all_sum(alive)[0] if self.world_size > 1 else alive[0]) > 0

    def dist_inputs(self, module_id: str, data: dict) -> torch.Tensor:
        """Action-distribution inputs per row under the current actor. Recurrent: the GRU runs
        over each sequence from its recorded `state_in` (rows are n_seq × L, in order)."""
        module = self.module[module_id].unwrapped()
        if STATE_IN not in data:
            return module.forward_train({Columns.OBS: data[Columns.OBS]})[Columns.ACTION_DIST_INPUTS]
        n_seq = data[STATE_IN].shape[0]
        obs = tree.map_structure(lambda x: x.reshape(n_seq, -1, *x.shape[1:]), data[Columns.OBS])
        out = module.forward_train({Columns.OBS: obs, Columns.STATE_IN: {HIDDEN: data[STATE_IN]}})
        x = out[Columns.ACTION_DIST_INPUTS]
        return x.reshape(-1, x.shape[-1])

    def logp_entropy(self, module_id: str, data: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint log-probability of the taken actions and the entropy, under the
        current actor (action masks applied inside the module)."""
        module = self.module[module_id].unwrapped()
        dist = module.get_train_action_dist_cls().from_logits(self.dist_inputs(module_id, data))
        return dist.logp(data[Columns.ACTIONS]), dist.entropy()

    def policy_mask(self, data: dict) -> torch.Tensor:
        """Rows that count in the actor's loss: alive ones (or all, without active masks), and
        never the padding of a recurrent batch."""
        mask = data[ALIVE] if self.config.use_policy_active_masks else torch.ones_like(data[ALIVE])
        return mask * data[LOSS_MASK] if LOSS_MASK in data else mask

    def num_minibatches(self, n: int, minibatch_size: int | None) -> int | None:
        """The same minibatch count on every learner: the smallest shard's."""
        if self.world_size == 1 or minibatch_size is None:
            return None
        count = torch.tensor(n // minibatch_size if minibatch_size < n else 1, device=self._device)
        torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MIN)
        return int(count)

    def minibatches(self, data: dict, n_rows: int, minibatch_size: int | None) -> Iterator[tuple[dict, torch.Tensor]]:
        """One epoch of (minibatch, its row indices): rows (feed-forward) or whole sequences of
        `data_chunk_length` rows (recurrent; minibatch_size // data_chunk_length of them)."""
        seq_len = self.seq_len
        if seq_len is None:
            units, size = n_rows, minibatch_size
        else:
            units, size = n_rows // seq_len, None if minibatch_size is None else max(1, minibatch_size // seq_len)
        count = self.num_minibatches(units, size)
        for idx in minibatch_indices(units, size, self._generator, count):
            yield index_batch(data, idx, seq_len)

    @abc.abstractmethod
    def actor_step(self, module_id: str, data: dict, advantages: torch.Tensor, factor: torch.Tensor) -> None:
        """Train one actor on its agent's rows, with advantages weighted by `factor`."""

    # ---- shared by gradient-based actor steps ---------------------------------------

    def minibatch_actor_step(
        self, module_id: str, data: dict, advantages: torch.Tensor, factor: torch.Tensor, surrogate
    ) -> None:
        """`num_epochs` × minibatches of Adam on surrogate(logp, old_logp, A, M, mask) − entropy
        (HAPPO's and HAA2C's step; HARL's `train`/`update`)."""
        cfg = self.config
        mask = self.policy_mask(data)
        for _ in range(cfg.num_epochs):
            for mb, idx in self.minibatches(data, len(advantages), cfg.minibatch_size):
                logp, entropy = self.logp_entropy(module_id, mb)
                policy_loss, ratio = surrogate(logp, mb[Columns.ACTION_LOGP], advantages[idx], factor[idx], mask[idx])
                mean_entropy = masked_mean(entropy, mask[idx])
                loss = policy_loss - cfg.entropy_coeff * mean_entropy
                grad_norm = self.gradient_step(module_id, loss, weight=mask[idx].sum())
                self.log_actor_metrics(
                    module_id,
                    policy_loss=policy_loss.item(),
                    entropy=mean_entropy.item(),
                    actor_grad_norm=grad_norm,
                    ratio=ratio.mean().item(),
                )

    # ---- the critic -------------------------------------------------------------------

    def critic_step(self, data: dict) -> None:
        """HARL's V-critic training: value-normalized targets, clipped Huber loss."""
        cfg = self.config
        critic = self.module[CRITIC_MODULE_ID].unwrapped()
        n = len(data[VALUE_TARGETS])
        mask = data[LOSS_MASK] if LOSS_MASK in data else torch.ones(n, device=self._device)
        for _ in range(cfg.critic_epoch):
            for mb, idx in self.minibatches(data, n, cfg.critic_minibatch_size):
                targets = mb[VALUE_TARGETS]
                if critic.value_norm is not None:
                    # Statistics over real rows only (never a recurrent batch's padding).
                    critic.value_norm.update(targets[mask[idx] > 0], self.all_sum if self.world_size > 1 else None)
                    targets = critic.value_norm.normalize(targets)
                values = self.critic_values(critic, mb)
                loss = cfg.value_loss_coef * value_loss(
                    values,
                    mb[VALUES],
                    targets,
                    mask[idx],
                    clip_param=cfg.clip_param,
                    use_clipped_value_loss=cfg.use_clipped_value_loss,
                    use_huber_loss=cfg.use_huber_loss,
                    huber_delta=cfg.huber_delta,
                )
                grad_norm = self.gradient_step(CRITIC_MODULE_ID, loss, weight=mask[idx].sum())
                self.log_actor_metrics(CRITIC_MODULE_ID, value_loss=loss.item(), critic_grad_norm=grad_norm)
        real = mask > 0
        with torch.no_grad():
            returns = critic.denormalize(self.critic_values(critic, data))
        explained = 1 - torch.var(data[VALUE_TARGETS][real] - returns[real]) / torch.var(
            data[VALUE_TARGETS][real]
        ).clamp(min=1e-8)
        self.log_actor_metrics(CRITIC_MODULE_ID, vf_explained_var=float(explained))

    def critic_values(self, critic, data: dict) -> torch.Tensor:
        """Raw V per row; recurrent: the critic's GRU over each sequence from its `state_in`."""
        if STATE_IN not in data:
            return critic.values(data[STATE])
        n_seq = data[STATE_IN].shape[0]
        state = data[STATE].reshape(n_seq, -1, *data[STATE].shape[1:])
        return critic.values_and_states(state, data[STATE_IN])[0].reshape(-1)

    def _log_counts(self, team: dict, agents: Sequence[str], env_steps: int) -> None:
        for aid in agents:
            mid = self.config.module_for(aid)
            rows = team[aid]
            n = int(rows[LOSS_MASK].sum()) if LOSS_MASK in rows else len(rows[ALIVE])
            for key, reduce in ((NUM_MODULE_STEPS_TRAINED, "sum"), (NUM_MODULE_STEPS_TRAINED_LIFETIME, "lifetime_sum")):
                self.metrics.log_value((mid, key), n, reduce=reduce)
                self.metrics.log_value((ALL_MODULES, key), n, reduce=reduce)
        self.metrics.log_value((ALL_MODULES, NUM_ENV_STEPS_TRAINED), env_steps, reduce="sum")
        self.metrics.log_value((ALL_MODULES, NUM_ENV_STEPS_TRAINED_LIFETIME), env_steps, reduce="lifetime_sum")


__all__ = ["HATorchLearner", "index_rows", "minibatch_indices"]
