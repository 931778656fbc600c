"""`HAOffPolicyAlgorithm.training_step`: sample → the learner stores and replays → sync.

HARL's off-policy runner cadence (see off_policy_config.py): the first iteration samples
the `warmup_steps` random-action steps and trains nothing; each later iteration samples
`train_interval` steps per env and asks the learner for `update_per_train × train_interval`
updates, each with its own agent order drawn here (one RNG on the driver, checkpointed).
"""

from __future__ import annotations

from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)

from harl_rllib.core.algorithm import HAAlgorithm


class HAOffPolicyAlgorithm(HAAlgorithm):
    """Base of HADDPG / HATD3 / HASAC / MADDPG / MATD3."""

    def training_step(self) -> None:
        cfg = self.config
        before = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
        steps = cfg.train_interval * cfg.num_envs_total()
        warming = before < cfg.warmup_steps
        if warming:
            steps = max(steps, cfg.warmup_steps - before)
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            episodes, env_runner_results = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                max_env_steps=steps,
                sample_timeout_s=cfg.sample_timeout_s,
                _uses_new_env_runners=True,
                _return_metrics=True,
            )
            self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)

        num_updates = 0 if warming else int(cfg.update_per_train * cfg.train_interval)
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(
                episodes=episodes,
                timesteps={
                    NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                        (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME)
                    ),
                    NUM_MODULE_STEPS_TRAINED_LIFETIME: self.metrics.peek(
                        (LEARNER_RESULTS, ALL_MODULES, NUM_MODULE_STEPS_TRAINED_LIFETIME), default=0
                    ),
                },
                num_updates=num_updates,
                agent_orders=[self.draw_agent_order() for _ in range(num_updates)],
            )
            self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)

        if num_updates:
            with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
                self.env_runner_group.sync_weights(
                    from_worker_or_learner_group=self.learner_group,
                    policies=cfg.actor_module_ids(),
                    inference_only=True,
                )
