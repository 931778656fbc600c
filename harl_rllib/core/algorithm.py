"""`HAAlgorithm.training_step`: sample → one agent order from the driver → update → sync."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import tree
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core.learner.training_data import TrainingData
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)

from harl_rllib.sampling.rollout import TeamRollout, shard_rollouts

ORDER_RNG = "harl_agent_order_rng"
# This iteration's sampling and learning seconds (RLlib's own timers are moving averages, which
# mix in e.g. an off-policy warm-up iteration 20x larger than the others).
SAMPLE_S, LEARN_S = "iteration_sample_s", "iteration_learn_s"


def _sample_and_metrics(runner) -> tuple[list, dict, Exception | None]:
    """One `sample()` on a runner, its metrics, and the error that stopped it for good."""
    return runner.sample(), runner.get_metrics(), getattr(runner, "fatal_error", None)


def _local_absolute(path: Any) -> Any:
    """A relative local path (str or Path) made absolute; a URI, a Checkpoint or None as is."""
    if isinstance(path, (str, Path)) and "://" not in str(path):
        return os.path.abspath(os.path.expanduser(str(path)))
    return path


class NonFiniteCheckpointError(FloatingPointError):
    """A checkpoint would hold NaN or inf weights."""


class HAAlgorithm(Algorithm):
    """Base of HAPPO / HATRPO / HAA2C / MAPPO: on-policy, one centralized critic."""

    def step(self) -> dict:
        """RLlib's iteration; its result also says how the env runners sampled."""
        result = super().step()
        result["sampling"] = self.config.sampling_path()
        return result

    def save_to_path(self, path: str | Path | None = None, **kwargs) -> str:
        """RLlib's `save_to_path` with two guards: a relative local path is taken from the
        working directory (pyarrow, which RLlib hands it to, accepts only absolute paths and
        URIs), and nothing is written while any weight or statistic is NaN or inf."""
        self.check_finite_weights()
        return super().save_to_path(_local_absolute(path), **kwargs)

    @classmethod
    def from_checkpoint(cls, path: Any, filesystem: Any = None, **kwargs) -> Algorithm:
        """RLlib's `from_checkpoint`; a relative local path, as `save_to_path` writes one."""
        return super().from_checkpoint(_local_absolute(path) if filesystem is None else path, filesystem, **kwargs)

    def restore_from_path(self, path: Any, *args, **kwargs) -> None:
        """RLlib's `restore_from_path`; a relative local path, as `save_to_path` writes one."""
        if kwargs.get("filesystem") is None:
            path = _local_absolute(path)
        return super().restore_from_path(path, *args, **kwargs)

    def check_finite_weights(self) -> None:
        """Raise `NonFiniteCheckpointError` naming the first module/tensor that is not finite."""
        for module_id, weights in self.learner_group.get_weights().items():
            for name, value in tree.flatten_with_path(weights):
                array = np.asarray(value)
                if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                    where = "/".join(str(p) for p in name)
                    raise NonFiniteCheckpointError(
                        f"Not saving a checkpoint: {module_id}/{where} holds NaN or inf values "
                        f"(iteration {self.iteration}). The previous checkpoint is kept."
                    )

    def setup(self, config) -> None:
        super().setup(config)
        self._order_rng = np.random.default_rng(self.config.seed)

    # The agent-order RNG is part of the checkpoint, so a resumed run draws the orders an
    # uninterrupted one would have drawn.
    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component(ORDER_RNG, components, not_components):
            state[ORDER_RNG] = self._order_rng.bit_generator.state
        return state

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if ORDER_RNG in state:
            self._order_rng.bit_generator.state = state[ORDER_RNG]

    def draw_agent_order(self) -> list[str]:
        """The iteration's update order: a fresh random permutation (HARL: torch.randperm),
        or the sorted team when `fixed_order`. Drawn here, on the driver, and sent to every
        learner, so that several learners agree."""
        agents = list(self.config.get_team_spec().agents)
        if self.config.fixed_order:
            return agents
        return [agents[i] for i in self._order_rng.permutation(len(agents))]

    def sample(self, max_env_steps: int) -> list:
        """Episodes of at least `max_env_steps` env steps from the env runners (metrics logged).

        RLlib's `synchronous_parallel_sample`, with one change: an error that stops a remote
        runner for good (an env failing past `max_env_failures_per_sample`, a NaN at the env
        boundary) comes back as a value and is raised here, on the driver. RLlib would log
        it, wait `delay_between_env_runner_restarts_s` and restart the runner, which would
        meet the same env again, without end."""
        group = self.env_runner_group
        episodes, results, steps = [], [], 0
        with (
            self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)),
            self.metrics.log_time((TIMERS, SAMPLE_S), reduce="mean", window=1),
        ):
            while steps < max_env_steps:
                if group.num_remote_workers() == 0:
                    out = [_sample_and_metrics(group.local_env_runner)]
                else:
                    out = group.foreach_env_runner(
                        _sample_and_metrics, local_env_runner=False, timeout_seconds=self.config.sample_timeout_s
                    )
                    if not out:  # every runner lost or timed out: RLlib restores them next iteration
                        break
                for runner_episodes, runner_metrics, fatal in out:
                    if fatal is not None:
                        raise fatal
                    episodes.extend(runner_episodes)
                    results.append(runner_metrics)
                    steps += int(runner_metrics.get(NUM_ENV_STEPS_SAMPLED, 0))
            self.metrics.aggregate(results, key=ENV_RUNNER_RESULTS)
        return episodes

    def update_learners(self, episodes: list, **kwargs) -> None:
        """One `learner_group.update` on the episodes; `kwargs` go to every learner's `update`."""
        with (
            self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)),
            self.metrics.log_time((TIMERS, LEARN_S), reduce="mean", window=1),
        ):
            data = {"episodes": episodes}
            shards = self.shard_samples(episodes, len(self.learner_group)) if len(self.learner_group) > 1 else None
            if shards is not None:
                data = {"training_data": TrainingData(batches=shards)}
            learner_results = self.learner_group.update(
                **data,
                timesteps={
                    NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                        (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME)
                    ),
                    NUM_MODULE_STEPS_TRAINED_LIFETIME: self.metrics.peek(
                        (LEARNER_RESULTS, ALL_MODULES, NUM_MODULE_STEPS_TRAINED_LIFETIME), default=0
                    ),
                },
                **kwargs,
            )
            self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)

    def shard_samples(self, samples: list, num_shards: int) -> list[list] | None:
        """Each learner's part of the iteration's samples (None: RLlib's episode sharding).

        Team rollouts: whole env streams where there are enough for every learner (a learner's
        GAE is then the unsplit one), else a split in time. RLlib's episodes: RLlib's balanced
        sharding, which cuts episodes (a cut bootstraps there), except for recurrent policies:
        whole episodes, every chunk of one on one learner, so that the critic runs every
        fragment of an episode on the learner that ran its predecessor in this update
        (validation: no more learners than envs)."""
        if not samples:
            return None
        if isinstance(samples[0], TeamRollout):
            return shard_rollouts(samples, num_shards)
        if not self.config.use_recurrent_policy:
            return None
        by_episode: dict = {}
        for episode in samples:
            if len(episode):
                by_episode.setdefault(episode.id_, []).append(episode)
        if len(by_episode) < num_shards:
            return None  # RLlib's cuts; a continuation without its critic state is counted
        shards: list[list] = [[] for _ in range(num_shards)]
        steps = [0] * num_shards
        for chunks in sorted(by_episode.values(), key=lambda c: -sum(len(e) for e in c)):
            k = int(np.argmin(steps))  # the longest episodes first, each to the lightest shard
            shards[k].extend(chunks)
            steps[k] += sum(len(e) for e in chunks)
        return shards

    def sync_actor_weights(self) -> None:
        """The actors' new weights to every env runner (inference-only: no critic, no targets)."""
        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                policies=self.config.actor_module_ids(),
                inference_only=True,
            )

    def training_step(self) -> None:
        episodes = self.sample(self.config.total_train_batch_size)
        if not episodes:
            return
        self.update_learners(episodes, agent_order=self.draw_agent_order())
        self.sync_actor_weights()
