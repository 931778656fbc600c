"""`HAConfig`: the settings shared by the on-policy HA family, with HARL's defaults.

RLlib's names where RLlib has one (`lr`, `gamma`, `lambda_`, `num_epochs`,
`minibatch_size`, `clip_param`, `entropy_coeff`, `train_batch_size_per_learner`);
HARL's names elsewhere (`critic_lr`, `critic_epoch`, `fixed_order`, `share_param`,
`use_valuenorm`, `use_huber_loss`, `huber_delta`, `max_grad_norm`, ...).

The config also knows the team: it builds one env on the driver to read the agents,
their spaces and the state space, so that bad input fails here, before any Ray
worker starts, and so that it can hand RLlib the full MultiRLModuleSpec (one actor
per agent, or one shared actor, plus the learner-only centralized critic).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.connectors.learner import LearnerConnectorPipeline
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from typing_extensions import Self

from harl_rllib.core.actor import ACTOR_DEFAULTS, HAActorTorchRLModule, split_obs
from harl_rllib.core.critic import CRITIC_MODULE_ID, CentralCriticTorchRLModule

SHARED_ACTOR_ID = "shared_actor"
_TEAM_CACHE: dict[str, TeamSpec] = {}


@dataclass(frozen=True)
class TeamSpec:
    """What the algorithm must know of the env: the agents, their spaces, the state."""

    agents: tuple[str, ...]
    observation_spaces: dict[str, gym.Space]
    action_spaces: dict[str, gym.Space]
    state_space: gym.spaces.Box
    has_state: bool


def team_spec_from_env(env: MultiAgentEnv, state_type: str = "EP") -> TeamSpec:
    """Read the team from an env instance (see envs/contract.py)."""
    if not isinstance(env, MultiAgentEnv):
        raise ValueError(f"harl_rllib needs a ray.rllib MultiAgentEnv; got {type(env).__name__}")
    agents = tuple(sorted(env.possible_agents))
    if not agents:
        raise ValueError("The env has no agents (`possible_agents` is empty).")
    obs = {a: env.get_observation_space(a) for a in agents}
    act = {a: env.get_action_space(a) for a in agents}
    for a in agents:
        split_obs(obs[a])  # raises a clear error for unsupported observation spaces
        if not isinstance(act[a], (gym.spaces.Discrete, gym.spaces.Box)):
            raise ValueError(f"Agent {a!r}: action space must be Discrete or Box; got {act[a]}")
    state_space = getattr(env, "state_space", None)
    if state_space is not None:
        has_state = True
    else:
        if state_type == "FP":
            raise ValueError("state_type='FP' needs an env that provides `state_space` and info['state'].")
        has_state = False
        dim = sum(int(np.prod(split_obs(obs[a])[0].shape)) for a in agents)
        state_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
    return TeamSpec(agents, obs, act, state_space, has_state)


def _agent_to_module(agent_id: str, *args, share_param: bool = False, **kwargs) -> str:
    return SHARED_ACTOR_ID if share_param else agent_id


class TeamConfig(AlgorithmConfig):
    """What every HA config shares: the team read from the env, agent → module mapping,
    the env runner and callbacks, and the checks on env and parameter sharing."""

    # Team rollouts hold each step's next observation (the off-policy family's replay needs it).
    rollout_next_obs = False

    def __init__(self, algo_class=None) -> None:
        super().__init__(algo_class=algo_class)
        self.fixed_order = False
        self.share_param = False
        self.state_type = "EP"
        self.num_env_runners = 0
        # RLlib's runner re-numpyfies every finished episode of a sample() call at every
        # env step (quadratic in short episodes: 4x slower sampling on SMAX 3m here). The
        # team batch builders stack list episodes themselves.
        self.episodes_to_numpy = False
        # An env that raises in step/reset is rebuilt and its cut episodes dropped, instead
        # of ending training (RLlib already restarts lost remote env runners).
        self.restart_failed_sub_environments = True
        # ... but not without end: more failures than this in one sample() call stop training.
        self.max_env_failures_per_sample = 10
        # Rewards, observations and states checked for NaN/inf and shape at the env boundary.
        self.check_env_values = True
        # A non-finite loss or gradient is never applied; this many in a row stop training.
        self.max_consecutive_nonfinite_updates = 5
        # "auto": team rollouts (dense arrays, harl_rllib/sampling) where the config allows them,
        # RLlib's episodes elsewhere; "team" or "episodes" to choose (see `sampling_path`).
        self.sampling = "auto"
        # Samples team rollouts, or RLlib's episodes (with an env's own batched vector env
        # when it has one: SMAX).
        from harl_rllib.sampling.team_env_runner import TeamEnvRunner

        self.env_runner_cls = TeamEnvRunner
        self.policy_mapping_fn = functools.partial(_agent_to_module, share_param=False)
        self.add_default_connectors_to_learner_pipeline = False
        # Team-stats callback (episode team return, env episode stats).
        from harl_rllib.core.callbacks import TeamMetricsCallback

        self.callbacks_class = TeamMetricsCallback
        # Evaluation as HARL's (off until `evaluation_interval` is set; train.py --eval-interval):
        # its eval_episodes (20) with deterministic actions, on separate evaluation env runners.
        self.evaluation_duration = 20
        self.evaluation_duration_unit = "episodes"
        self.evaluation_config = {"explore": False}

    def get_evaluation_config_object(self) -> AlgorithmConfig | None:
        """RLlib's, with no more envs per evaluation runner than it has episodes to run: a
        runner steps all its envs until enough episodes end, so 20 envs would run 20 episodes
        for an evaluation of 5."""
        eval_config = super().get_evaluation_config_object()
        duration = self.evaluation_duration
        if eval_config is not None and self.evaluation_duration_unit == "episodes" and isinstance(duration, int):
            per_runner = math.ceil(duration / max(1, int(self.evaluation_num_env_runners or 0)))
            eval_config.num_envs_per_env_runner = min(int(eval_config.num_envs_per_env_runner), per_runner)
        return eval_config

    def env_steps_per_iteration(self) -> int:
        """Env steps one `train()` call samples (after any warm-up)."""
        return int(self.total_train_batch_size)

    def num_envs_total(self) -> int:
        """Training envs over all env runners (the local one samples when there are none)."""
        return int(self.num_envs_per_env_runner) * max(1, int(self.num_env_runners or 0))

    def _set_provided(self, **values: Any) -> None:
        """Set every field whose value was given (builder methods' NotProvided convention)."""
        for name, value in values.items():
            if value is not NotProvided:
                setattr(self, name, value)

    def environment(self, env=NotProvided, *, check_env_values=NotProvided, **kwargs) -> Self:
        """RLlib's `environment()`, plus `check_env_values` (default True): check every reward,
        observation and state for NaN/inf and every observation's shape at the env boundary
        (off: a little faster, once you trust an env)."""
        super().environment(env, **kwargs)
        self._set_provided(check_env_values=check_env_values)
        return self

    def env_runners(self, *, sampling=NotProvided, **kwargs) -> Self:
        """RLlib's `env_runners()`, plus `sampling`: "auto" (default: team rollouts where the
        config allows them, see `sampling_path`), "team" or "episodes" (RLlib's episodes)."""
        super().env_runners(**kwargs)
        self._set_provided(sampling=sampling)
        return self

    def sampling_path(self) -> str:
        """How env runners sample: "team" (dense team rollouts, harl_rllib/sampling) or
        "episodes" (RLlib's MultiAgentEpisodes)."""
        if self.sampling != "auto":
            return self.sampling
        return "episodes" if self.team_path_blocker() else "team"

    def team_path_blocker(self) -> str | None:
        """Why this config cannot sample team rollouts (None: it can)."""
        from harl_rllib.core.env_runner import env_class, vector_env_factory

        if vector_env_factory(self.env) is not None and not getattr(env_class(self.env), "team_vector_env", False):
            return f"{self.env!r} steps its own batched vector env without the team-step interface"
        return None

    def fault_tolerance(
        self,
        *,
        max_env_failures_per_sample=NotProvided,
        max_consecutive_nonfinite_updates=NotProvided,
        **kwargs,
    ) -> Self:
        """RLlib's `fault_tolerance()`, plus `max_env_failures_per_sample` (default 10: more env
        failures than this in one env runner's sample() call stop training with an error) and
        `max_consecutive_nonfinite_updates` (default 5: non-finite gradient steps are skipped;
        this many in a row stop training)."""
        super().fault_tolerance(**kwargs)
        self._set_provided(
            max_env_failures_per_sample=max_env_failures_per_sample,
            max_consecutive_nonfinite_updates=max_consecutive_nonfinite_updates,
        )
        return self

    # ---- the team -----------------------------------------------------------------

    def _make_env(self) -> MultiAgentEnv:
        from ray.rllib.env.env_context import EnvContext
        from ray.tune.registry import ENV_CREATOR, _global_registry

        ctx = EnvContext(dict(self.env_config or {}), worker_index=0)
        if isinstance(self.env, str):
            if _global_registry.contains(ENV_CREATOR, self.env):
                return _global_registry.get(ENV_CREATOR, self.env)(ctx)
            raise ValueError(
                f"Unknown env {self.env!r}: register it with ray.tune.registry.register_env "
                "or pass the MultiAgentEnv class to `.environment(...)`."
            )
        if isinstance(self.env, type):
            return self.env(ctx)
        raise ValueError("Set the env with `.environment(env=...)` (a registered name or a MultiAgentEnv class).")

    def get_team_spec(self) -> TeamSpec:
        """The team of the configured env (built once per env and env_config)."""
        key = json.dumps([repr(self.env), self.env_config, self.state_type], sort_keys=True, default=repr)
        if key not in _TEAM_CACHE:
            env = self._make_env()
            try:
                _TEAM_CACHE[key] = team_spec_from_env(env, self.state_type)
            finally:
                close = getattr(env, "close", None)
                if close is not None:
                    close()
        return _TEAM_CACHE[key]

    def actor_module_ids(self) -> list[str]:
        return [SHARED_ACTOR_ID] if self.share_param else list(self.get_team_spec().agents)

    def module_for(self, agent_id: str) -> str:
        return _agent_to_module(agent_id, share_param=self.share_param)

    def central_critic_spec(self, module_class: type, model_config: dict) -> RLModuleSpec:
        """The learner-only centralized critic's spec: it reads the team's global state."""
        return RLModuleSpec(
            module_class=module_class,
            observation_space=self.get_team_spec().state_space,
            action_space=gym.spaces.Discrete(1),
            model_config=model_config,
            learner_only=True,
        )

    def actor_specs(self, module_class: type, model_config: dict, inference_only: bool) -> dict[str, RLModuleSpec]:
        """One actor spec per module: per agent, or one for all with `share_param`."""
        team = self.get_team_spec()
        specs: dict[str, RLModuleSpec] = {}
        for aid in team.agents:
            mid = self.module_for(aid)
            if mid not in specs:
                specs[mid] = RLModuleSpec(
                    module_class=module_class,
                    observation_space=team.observation_spaces[aid],
                    action_space=team.action_spaces[aid],
                    model_config=dict(model_config),
                    inference_only=inference_only,
                )
        return specs

    def get_default_rl_module_spec(self) -> MultiRLModuleSpec:
        return self.get_multi_rl_module_spec()

    def build_env_to_module_connector(self, env=None, spaces=None, device=None):
        """RLlib's pipeline with `SortAgentsInBatch` before the agent → module mapping, so
        that a seed repeats a run whatever the process's hash seed (see core/agent_order.py)."""
        from ray.rllib.connectors.common import AgentToModuleMapping

        from harl_rllib.core.agent_order import SortAgentsInBatch

        pipeline = super().build_env_to_module_connector(env=env, spaces=spaces, device=device)
        if any(isinstance(piece, AgentToModuleMapping) for piece in pipeline.connectors):
            pipeline.insert_before(AgentToModuleMapping, SortAgentsInBatch())
        return pipeline

    # ---- validation ---------------------------------------------------------------

    def validate(self) -> None:
        super().validate()
        self._validate_ha_settings()
        # Map agents to modules consistently with share_param, whichever way it was set.
        self.policy_mapping_fn = functools.partial(_agent_to_module, share_param=self.share_param)
        self.policies = {mid: None for mid in self.actor_module_ids()}

    def _positive(self, name: str, integer: bool = False) -> None:
        v = getattr(self, name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0 or (integer and int(v) != v):
            self._value_error(f"`{name}` must be a positive {'integer' if integer else 'number'}; got {v!r}")

    def _validate_ha_settings(self) -> None:
        """Checks on the team; subclasses add their own settings' checks."""
        if not 0.0 <= self.gamma <= 1.0:
            self._value_error(f"`gamma` must be in [0, 1]; got {self.gamma}")
        if self.state_type not in ("EP", "FP"):
            self._value_error(f"`state_type` must be 'EP' or 'FP'; got {self.state_type!r}")
        if self.sampling not in ("auto", "team", "episodes"):
            self._value_error(f"`sampling` must be 'auto', 'team' or 'episodes'; got {self.sampling!r}")
        if self.sampling == "team" and (why := self.team_path_blocker()):
            self._value_error(f"sampling='team' is not available for this config: {why}. Use 'auto' or 'episodes'.")
        for name, least in (("max_env_failures_per_sample", 0), ("max_consecutive_nonfinite_updates", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < least:
                self._value_error(f"`{name}` must be an integer >= {least}; got {v!r}")
        if self.state_type == "FP" and (self.env_config or {}).get("state_type") != "FP":
            self._value_error(
                "state_type='FP' needs per-agent states from the env: set env_config['state_type'] = 'FP' too "
                "(the SMAC, SMACv2, SMAX and MAMuJoCo adapters support it)."
            )
        if self.env is None:
            self._value_error("No env: set one with `.environment(env=...)`.")
        team = self.get_team_spec()
        if self.share_param:
            a0 = team.agents[0]
            for a in team.agents[1:]:
                if (
                    team.observation_spaces[a] != team.observation_spaces[a0]
                    or team.action_spaces[a] != team.action_spaces[a0]
                ):
                    self._value_error(
                        "share_param=True needs every agent to have the same observation and action "
                        f"spaces, but {a0!r} has ({team.observation_spaces[a0]}, {team.action_spaces[a0]}) "
                        f"and {a!r} has ({team.observation_spaces[a]}, {team.action_spaces[a]}). "
                        "Use share_param=False (one actor per agent)."
                    )


class HAConfig(TeamConfig):
    """Base config for HAPPO, HATRPO, HAA2C and MAPPO (see module doc)."""

    def __init__(self, algo_class=None) -> None:
        super().__init__(algo_class=algo_class)
        # HARL defaults (configs/algos_cfgs/happo.yaml).
        self.lr = 5e-4
        self.critic_lr = 5e-4
        self.opti_eps = 1e-5
        self.weight_decay = 0.0
        self.gamma = 0.99
        self.lambda_ = 0.95
        self.num_epochs = 5  # HARL: ppo_epoch
        self.critic_epoch = 5
        self.minibatch_size = None  # None: the whole batch (HARL: actor_num_mini_batch=1)
        self.critic_minibatch_size = None
        self.clip_param = 0.2
        self.entropy_coeff = 0.01
        self.value_loss_coef = 1.0
        self.use_max_grad_norm = True
        self.max_grad_norm = 10.0
        self.use_clipped_value_loss = True
        self.use_huber_loss = True
        self.huber_delta = 10.0
        self.use_valuenorm = True
        self.use_policy_active_masks = True
        self.sequential_update = True
        self.actor_model = dict(ACTOR_DEFAULTS)
        self.critic_hidden_sizes = [128, 128]
        # Recurrent actors and critic (HARL's names and defaults): a GRU after the MLP base.
        self.use_recurrent_policy = False
        self.recurrent_n = 1
        self.recurrent_hidden_size = None  # None: the last hidden size of each MLP (HARL)
        self.data_chunk_length = 10
        self.train_batch_size_per_learner = 4000  # HARL MPE: 200 steps × 20 envs
        self.num_envs_per_env_runner = 20  # HARL MPE: n_rollout_threads 20 (fastest here too)
        self.batch_mode = "truncate_episodes"
        # Each runner's fragment = batch / (envs × runners), as in PPOConfig (HARL: episode_length).
        self.rollout_fragment_length = "auto"

    def training(
        self,
        *,
        lambda_: float = NotProvided,
        clip_param: float = NotProvided,
        entropy_coeff: float = NotProvided,
        critic_lr: float = NotProvided,
        critic_epoch: int = NotProvided,
        critic_minibatch_size: int | None = NotProvided,
        opti_eps: float = NotProvided,
        weight_decay: float = NotProvided,
        value_loss_coef: float = NotProvided,
        use_max_grad_norm: bool = NotProvided,
        max_grad_norm: float = NotProvided,
        use_clipped_value_loss: bool = NotProvided,
        use_huber_loss: bool = NotProvided,
        huber_delta: float = NotProvided,
        use_valuenorm: bool = NotProvided,
        use_policy_active_masks: bool = NotProvided,
        fixed_order: bool = NotProvided,
        share_param: bool = NotProvided,
        sequential_update: bool = NotProvided,
        state_type: str = NotProvided,
        actor_model: dict = NotProvided,
        critic_hidden_sizes: list = NotProvided,
        use_recurrent_policy: bool = NotProvided,
        recurrent_n: int = NotProvided,
        recurrent_hidden_size: int | None = NotProvided,
        data_chunk_length: int = NotProvided,
        **kwargs,
    ) -> Self:
        """Sets the training settings; all of RLlib's `training()` arguments work too.

        Args:
            critic_lr: The critic's Adam learning rate (`lr` is the actors').
            critic_epoch: Epochs of critic training per iteration.
            critic_minibatch_size: Critic minibatch rows (None: the whole batch).
            opti_eps, weight_decay: Adam's eps and weight decay (actors and critic).
            value_loss_coef: Scale of the critic loss.
            use_max_grad_norm, max_grad_norm: Clip each network's gradient norm.
            use_clipped_value_loss: PPO-style clipping of the value change (by clip_param).
            use_huber_loss, huber_delta: Huber instead of squared error for the critic.
            use_valuenorm: Normalize value targets with running statistics.
            use_policy_active_masks: Dead agents' rows carry no weight in actor losses.
            fixed_order: Update agents in their sorted order instead of a random
                permutation each iteration.
            share_param: One actor for all agents (spaces must match).
            sequential_update: The HA update (factor M); False = all agents updated
                on the plain advantage, as MAPPO (the paper's ablation).
            state_type: "EP" (one global state) or "FP" (one state per agent).
            actor_model: Actor network settings (hidden_sizes, activation,
                use_feature_normalization, gain, std_x_coef, std_y_coef).
            critic_hidden_sizes: The critic MLP's hidden sizes.
            use_recurrent_policy: A GRU after the MLP base of every actor and of the
                critic; hidden states reset at episode starts and carried across rollout
                fragments; training on chunks of `data_chunk_length` steps from the
                states recorded at each chunk's first step.
            recurrent_n: GRU layers.
            recurrent_hidden_size: GRU size (None: each network's last hidden size, HARL's).
            data_chunk_length: Steps per training chunk; `minibatch_size` then counts
                rows of whole chunks (minibatch_size // data_chunk_length chunks).
        """
        super().training(**kwargs)
        self._set_provided(
            lambda_=lambda_,
            clip_param=clip_param,
            entropy_coeff=entropy_coeff,
            critic_lr=critic_lr,
            critic_epoch=critic_epoch,
            critic_minibatch_size=critic_minibatch_size,
            opti_eps=opti_eps,
            weight_decay=weight_decay,
            value_loss_coef=value_loss_coef,
            use_max_grad_norm=use_max_grad_norm,
            max_grad_norm=max_grad_norm,
            use_clipped_value_loss=use_clipped_value_loss,
            use_huber_loss=use_huber_loss,
            huber_delta=huber_delta,
            use_valuenorm=use_valuenorm,
            use_policy_active_masks=use_policy_active_masks,
            fixed_order=fixed_order,
            share_param=share_param,
            sequential_update=sequential_update,
            state_type=state_type,
            critic_hidden_sizes=critic_hidden_sizes,
            use_recurrent_policy=use_recurrent_policy,
            recurrent_n=recurrent_n,
            recurrent_hidden_size=recurrent_hidden_size,
            data_chunk_length=data_chunk_length,
        )
        if actor_model is not NotProvided:
            self.actor_model = {**ACTOR_DEFAULTS, **actor_model}
        return self

    def recurrent_model_config(self) -> dict[str, Any]:
        """The recurrent settings as every module's model_config carries them."""
        return {
            "use_recurrent_policy": bool(self.use_recurrent_policy),
            "recurrent_n": self.recurrent_n,
            "recurrent_hidden_size": self.recurrent_hidden_size,
            "max_seq_len": self.data_chunk_length,
        }

    def get_multi_rl_module_spec(self, *, inference_only: bool = False, **kwargs) -> MultiRLModuleSpec:
        """One actor spec per agent (or one shared), plus the learner-only critic."""
        recurrent = self.recurrent_model_config()
        specs = self.actor_specs(HAActorTorchRLModule, {**self.actor_model, **recurrent}, inference_only)
        if not inference_only:
            specs[CRITIC_MODULE_ID] = self.central_critic_spec(
                CentralCriticTorchRLModule,
                {"hidden_sizes": list(self.critic_hidden_sizes), "use_valuenorm": self.use_valuenorm, **recurrent},
            )
        return MultiRLModuleSpec(rl_module_specs=specs)

    def build_learner_connector(self, input_observation_space, input_action_space, device=None):
        """Only the team batch builder: per-module batching and per-module GAE do not apply."""
        from harl_rllib.core.team_batch import TeamBatchBuilder

        team = self.get_team_spec()
        custom = []
        if self._learner_connector is not None:
            val = self._learner_connector(input_observation_space, input_action_space)
            custom = list(val) if isinstance(val, (list, tuple)) else [val]
        builder = TeamBatchBuilder(
            agents=team.agents,
            gamma=self.gamma,
            lambda_=self.lambda_,
            state_type=self.state_type,
            has_state=team.has_state,
            device=device or "cpu",
            chunk_length=self.data_chunk_length if self.use_recurrent_policy else None,
            agent_modules={a: self.module_for(a) for a in team.agents},
        )
        return LearnerConnectorPipeline(
            connectors=[*custom, builder],
            input_observation_space=input_observation_space,
            input_action_space=input_action_space,
        )

    # ---- validation ---------------------------------------------------------------

    def _validate_ha_settings(self) -> None:
        for name in ("lr", "critic_lr", "opti_eps", "max_grad_norm", "huber_delta", "clip_param"):
            self._positive(name)
        for name in ("num_epochs", "critic_epoch", "train_batch_size_per_learner"):
            self._positive(name, integer=True)
        if not 0.0 <= self.lambda_ <= 1.0:
            self._value_error(f"`lambda_` must be in [0, 1]; got {self.lambda_}")
        if isinstance(self.entropy_coeff, (int, float)) and self.entropy_coeff < 0:
            self._value_error(f"`entropy_coeff` must be >= 0; got {self.entropy_coeff}")
        for name in ("recurrent_n", "data_chunk_length"):
            self._positive(name, integer=True)
        if self.recurrent_hidden_size is not None:
            self._positive("recurrent_hidden_size", integer=True)
        if self.use_recurrent_policy and (self.num_learners or 0) > self.num_envs_total():
            # Each learner trains whole env streams (HAAlgorithm.shard_samples): a stream cut in
            # time would need its critic state from another learner within the same update.
            self._value_error(
                f"use_recurrent_policy with num_learners={self.num_learners} needs at least as many envs in all "
                f"(num_env_runners × num_envs_per_env_runner = {self.num_envs_total()}), so that each learner "
                "trains whole env streams."
            )
        if self.use_recurrent_policy and self.episode_lookback_horizon < 1:
            # A fragment's first state is the previous fragment's last STATE_OUT, kept in the lookback.
            self._value_error("use_recurrent_policy needs episode_lookback_horizon >= 1 (RLlib's default).")
        for name in ("minibatch_size", "critic_minibatch_size"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v <= 0):
                self._value_error(f"`{name}` must be None (whole batch) or a positive integer; got {v!r}")
        super()._validate_ha_settings()  # the team is known from here on
        # A minibatch counts the rows it splits: one per env step, or one per agent and env step for
        # a shared actor in the simultaneous update (MAPPO: one step on every agent's rows; the
        # sequential update trains it on one agent's rows at a time) and an FP critic (a state each).
        n_agents = len(self.get_team_spec().agents)
        per_agent_rows = {
            "minibatch_size": self.share_param and not self.sequential_update,
            "critic_minibatch_size": self.state_type == "FP",
        }
        for name, per_agent in per_agent_rows.items():
            v, rows = getattr(self, name), self.train_batch_size_per_learner * (n_agents if per_agent else 1)
            if v is not None and v > rows:
                what = f"{n_agents} agents × " if per_agent else ""
                self._value_error(
                    f"`{name}` ({v}) is larger than the batch it splits ({what}`train_batch_size_per_learner` "
                    f"{self.train_batch_size_per_learner} = {rows} rows); use None for whole-batch updates."
                )
