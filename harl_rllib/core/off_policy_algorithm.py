"""`HAOffPolicyAlgorithm.training_step`: sample → the learner stores and replays → sync.

HARL's off-policy runner cadence (see off_policy_config.py): the first iteration samples
the `warmup_steps` random-action steps and trains nothing; each later iteration samples
`train_interval` steps per env and asks the learner for `update_per_train × train_interval`
updates, each with its own agent order drawn here (one RNG on the driver, checkpointed).
"""

from __future__ import annotations

from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

from harl_rllib.core.algorithm import HAAlgorithm


class HAOffPolicyAlgorithm(HAAlgorithm):
    """Base of HADDPG / HATD3 / HASAC / HAD3QN / MADDPG / MATD3."""

    def shard_samples(self, samples: list, num_shards: int) -> list[list] | None:
        """Every learner gets every sample: the replay buffer is replicated over learners
        (why: core/off_policy_learner.py)."""
        return [list(samples) for _ in range(num_shards)] if samples else None

    def training_step(self) -> None:
        cfg = self.config
        before = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
        steps = cfg.train_interval * cfg.num_envs_total()
        warming = before < cfg.warmup_steps
        if warming:
            steps = max(steps, cfg.warmup_steps - before)
        episodes = self.sample(steps)
        num_updates = 0 if warming else int(cfg.update_per_train * cfg.train_interval)
        self.update_learners(
            episodes,
            num_updates=num_updates,
            agent_orders=[self.draw_agent_order() for _ in range(num_updates)],
        )
        if num_updates:
            self.sync_actor_weights()
