"""`HAOffPolicyConfig`: the settings shared by HADDPG, HATD3, HASAC, MADDPG and MATD3.

HARL's names and defaults (configs/algos_cfgs/hatd3.yaml) where RLlib has no name for a
setting (`warmup_steps`, `train_interval`, `update_per_train`, `buffer_size`,
`expl_noise`, `policy_noise`, `noise_clip`, `policy_freq`, `alpha`, `auto_alpha`,
`alpha_lr`); RLlib's where it has one (`lr`, `gamma`, `tau` = HARL's polyak, `n_step`,
`train_batch_size_per_learner` = HARL's batch_size).

Cadence (HARL's runner): the first `warmup_steps` env steps act uniformly at random and
train nothing; after that every iteration samples `train_interval` steps from each env
(so train_interval × envs env steps) and makes `update_per_train × train_interval`
gradient updates, each on `train_batch_size_per_learner` transitions drawn from the
replay buffer.
"""

from __future__ import annotations

import gymnasium as gym
from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from typing_extensions import Self

from harl_rllib.core.config import TeamConfig
from harl_rllib.core.critic import CRITIC_MODULE_ID
from harl_rllib.core.off_policy_modules import (
    OFF_POLICY_ACTOR_DEFAULTS,
    DeterministicActorTorchRLModule,
    QCriticTorchRLModule,
    action_dim,
)


class HAOffPolicyConfig(TeamConfig):
    """Base config of the off-policy family (see module doc)."""

    def __init__(self, algo_class=None) -> None:
        super().__init__(algo_class=algo_class)
        # HARL's hatd3.yaml.
        self.lr = 5e-4
        self.critic_lr = 1e-3
        self.opti_eps = 1e-8  # torch's Adam default, which HARL's off-policy optimizers use
        self.weight_decay = 0.0
        self.use_max_grad_norm = False  # HARL's off-policy updates do not clip gradients
        self.max_grad_norm = 10.0
        self.gamma = 0.99
        self.tau = 0.005
        self.n_step = 1
        self.buffer_size = 1_000_000
        self.store_buffer_in_checkpoints = False  # RLlib's name (DQN/SAC): the buffer's rows too
        self.train_batch_size_per_learner = 1000
        self.warmup_steps = 10_000
        self.train_interval = 50
        self.update_per_train = 1.0
        self.expl_noise = 0.1
        self.policy_noise = 0.2
        self.noise_clip = 0.5
        self.policy_freq = 2
        self.num_q = 2
        self.sequential_update = True
        self.actor_model = dict(OFF_POLICY_ACTOR_DEFAULTS, hidden_sizes=[128, 128])
        self.critic_hidden_sizes = [128, 128]
        self.critic_activation = "relu"
        self.use_valuenorm = False
        self.use_huber_loss = False
        self.huber_delta = 10.0
        self.use_policy_active_masks = False
        # HASAC's temperature (unused by the deterministic members).
        self.alpha = 0.001
        self.auto_alpha = False
        self.alpha_lr = 3e-4
        self.num_envs_per_env_runner = 10  # HARL hatd3: n_rollout_threads 10
        self.batch_mode = "truncate_episodes"
        # Actions are [-1, 1]; RLlib maps them to the env's bounds (see off_policy_modules.py).
        self.normalize_actions = True

    def training(
        self,
        *,
        critic_lr: float = NotProvided,
        opti_eps: float = NotProvided,
        weight_decay: float = NotProvided,
        use_max_grad_norm: bool = NotProvided,
        max_grad_norm: float = NotProvided,
        tau: float = NotProvided,
        n_step: int = NotProvided,
        buffer_size: int = NotProvided,
        store_buffer_in_checkpoints: bool = NotProvided,
        warmup_steps: int = NotProvided,
        train_interval: int = NotProvided,
        update_per_train: float = NotProvided,
        expl_noise: float = NotProvided,
        policy_noise: float = NotProvided,
        noise_clip: float = NotProvided,
        policy_freq: int = NotProvided,
        sequential_update: bool = NotProvided,
        fixed_order: bool = NotProvided,
        share_param: bool = NotProvided,
        state_type: str = NotProvided,
        actor_model: dict = NotProvided,
        critic_hidden_sizes: list = NotProvided,
        critic_activation: str = NotProvided,
        use_valuenorm: bool = NotProvided,
        use_huber_loss: bool = NotProvided,
        huber_delta: float = NotProvided,
        use_policy_active_masks: bool = NotProvided,
        alpha: float = NotProvided,
        auto_alpha: bool = NotProvided,
        alpha_lr: float = NotProvided,
        **kwargs,
    ) -> Self:
        """Sets the training settings; RLlib's `training()` arguments work too.

        Args:
            critic_lr: The critic's Adam learning rate (`lr` is the actors').
            tau: Polyak coefficient of the target networks (HARL's `polyak`).
            n_step: Steps summed in each TD target (truncated at episode ends).
            buffer_size: Replay capacity in env steps (per learner).
            store_buffer_in_checkpoints: Save the replay buffer's rows in checkpoints (large), so
                that a restored run continues from the same buffer; otherwise it refills first.
            warmup_steps: Env steps of uniformly random actions before any update.
            train_interval: Steps sampled per env between trainings.
            update_per_train: Gradient updates per train_interval step.
            expl_noise: Std of the Gaussian exploration noise (deterministic actors).
            policy_noise, noise_clip: TD3's target smoothing noise and its clip.
            policy_freq: Critic updates per actor (and target) update (TD3's delay).
            sequential_update: HA's sequential substitution of updated actions; False =
                every agent against the others' old actions (MADDPG/MATD3).
            fixed_order, share_param, state_type: as for the on-policy family.
            actor_model: hidden_sizes, activation, final_activation of every actor.
            critic_hidden_sizes, critic_activation: the Q networks' MLP.
            use_valuenorm: Normalize Q targets with running statistics (HASAC).
            use_huber_loss, huber_delta: Huber instead of squared TD error (HASAC).
            use_policy_active_masks: Dead agents' rows carry no weight in actor losses.
            alpha, auto_alpha, alpha_lr: HASAC's entropy temperature (fixed, or tuned per
                agent towards a target entropy).
        """
        super().training(**kwargs)
        self._set_provided(
            critic_lr=critic_lr,
            opti_eps=opti_eps,
            weight_decay=weight_decay,
            use_max_grad_norm=use_max_grad_norm,
            max_grad_norm=max_grad_norm,
            tau=tau,
            n_step=n_step,
            buffer_size=buffer_size,
            store_buffer_in_checkpoints=store_buffer_in_checkpoints,
            warmup_steps=warmup_steps,
            train_interval=train_interval,
            update_per_train=update_per_train,
            expl_noise=expl_noise,
            policy_noise=policy_noise,
            noise_clip=noise_clip,
            policy_freq=policy_freq,
            sequential_update=sequential_update,
            fixed_order=fixed_order,
            share_param=share_param,
            state_type=state_type,
            critic_hidden_sizes=critic_hidden_sizes,
            critic_activation=critic_activation,
            use_valuenorm=use_valuenorm,
            use_huber_loss=use_huber_loss,
            huber_delta=huber_delta,
            use_policy_active_masks=use_policy_active_masks,
            alpha=alpha,
            auto_alpha=auto_alpha,
            alpha_lr=alpha_lr,
        )
        if actor_model is not NotProvided:
            self.actor_model = {**self.actor_model, **actor_model}
        return self

    # ---- modules ------------------------------------------------------------------

    actor_module_class = DeterministicActorTorchRLModule
    rollout_next_obs = True

    def env_steps_per_iteration(self) -> int:
        return int(self.train_interval) * self.num_envs_total()

    def get_rollout_fragment_length(self, worker_index: int = 0) -> int:
        """Each sample() call steps every env `train_interval` times (HARL's cadence)."""
        return int(self.train_interval)

    def get_multi_rl_module_spec(self, *, inference_only: bool = False, **kwargs) -> MultiRLModuleSpec:
        """One actor per agent (or one shared) and the learner-only Q critic."""
        specs = self.actor_specs(self.actor_module_class, self.actor_model_config(), inference_only)
        if not inference_only:
            specs[CRITIC_MODULE_ID] = self.critic_spec()
        return MultiRLModuleSpec(rl_module_specs=specs)

    def actor_model_config(self) -> dict:
        """Every actor's model_config: `actor_model` and the exploration settings."""
        return {**self.actor_model, "expl_noise": self.expl_noise, "warmup_steps": self.warmup_steps}

    def critic_spec(self) -> RLModuleSpec:
        """The learner-only centralized Q critic over the state and the joint action."""
        team = self.get_team_spec()
        return self.central_critic_spec(
            QCriticTorchRLModule,
            {
                "hidden_sizes": list(self.critic_hidden_sizes),
                "activation": self.critic_activation,
                "num_q": self.num_q,
                "use_valuenorm": self.use_valuenorm,
                "action_dims": [action_dim(team.action_spaces[a]) for a in team.agents],
            },
        )

    def build_learner_connector(self, input_observation_space, input_action_space, device=None):
        """None: the off-policy learner cuts episodes into team transitions itself."""
        from ray.rllib.connectors.learner import LearnerConnectorPipeline

        return LearnerConnectorPipeline(
            connectors=[], input_observation_space=input_observation_space, input_action_space=input_action_space
        )

    # ---- validation ---------------------------------------------------------------

    def _validate_ha_settings(self) -> None:
        for name in ("lr", "critic_lr", "opti_eps", "max_grad_norm", "huber_delta", "update_per_train"):
            self._positive(name)
        for name in ("n_step", "buffer_size", "train_interval", "policy_freq", "train_batch_size_per_learner"):
            self._positive(name, integer=True)
        if not 0.0 < self.tau <= 1.0:
            self._value_error(f"`tau` must be in (0, 1]; got {self.tau}")
        for name in ("expl_noise", "policy_noise", "noise_clip", "alpha", "warmup_steps"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                self._value_error(f"`{name}` must be a number >= 0; got {v!r}")
        if self.auto_alpha:
            self._positive("alpha_lr")
        if not self.normalize_actions:
            self._value_error(
                "The off-policy actors act in [-1, 1] and rely on RLlib's normalize_actions=True to reach the "
                "env's bounds; do not turn it off."
            )
        super()._validate_ha_settings()
        team = self.get_team_spec()
        if self.actor_module_class is DeterministicActorTorchRLModule:
            for aid, space in team.action_spaces.items():
                if not isinstance(space, gym.spaces.Box):
                    self._value_error(
                        f"{self.algo_class.__name__ if self.algo_class else 'This algorithm'} needs continuous "
                        f"(Box) actions, but agent {aid!r} has {space}; HASAC handles discrete actions "
                        "(MPE: env_config continuous_actions=True, train.py --continuous-actions)."
                    )
