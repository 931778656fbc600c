"""HATRPO: the sequential update inside a KL-constrained natural-gradient step.

For each agent in the iteration's order, one step on the surrogate mean(M · r · A):
conjugate gradient on the Fisher-vector product (Hessian of the mean KL + damping),
step size sqrt(2δ / sᵀHs), backtracking line search. The critic trains as in HAPPO.
"""

from __future__ import annotations

from ray.rllib.algorithms.algorithm_config import NotProvided
from typing_extensions import Self

from harl_rllib.core.algorithm import HAAlgorithm
from harl_rllib.core.config import HAConfig


class HATRPOConfig(HAConfig):
    """HARL's HATRPO defaults: kl_threshold 0.01, 10 line-search tries, backtrack 0.8,
    accept ratio 0.5, 10 conjugate-gradient iterations, damping 0.1."""

    def __init__(self, algo_class=None) -> None:
        super().__init__(algo_class=algo_class or HATRPO)
        self.kl_threshold = 0.01
        self.ls_step = 10
        self.backtrack_coeff = 0.8
        self.accept_ratio = 0.5
        self.cg_iters = 10
        self.cg_damping = 0.1

    def training(
        self,
        *,
        kl_threshold: float = NotProvided,
        ls_step: int = NotProvided,
        backtrack_coeff: float = NotProvided,
        accept_ratio: float = NotProvided,
        cg_iters: int = NotProvided,
        cg_damping: float = NotProvided,
        **kwargs,
    ) -> Self:
        """HATRPO's trust-region settings (δ = `kl_threshold`); see `HAConfig.training`."""
        super().training(**kwargs)
        self._set_provided(
            kl_threshold=kl_threshold,
            ls_step=ls_step,
            backtrack_coeff=backtrack_coeff,
            accept_ratio=accept_ratio,
            cg_iters=cg_iters,
            cg_damping=cg_damping,
        )
        return self

    def _validate_ha_settings(self) -> None:
        super()._validate_ha_settings()
        if not self.kl_threshold > 0:
            self._value_error(f"`kl_threshold` must be > 0; got {self.kl_threshold}")
        if not (isinstance(self.ls_step, int) and self.ls_step >= 1):
            self._value_error(f"`ls_step` must be a positive integer; got {self.ls_step}")
        if not 0 < self.backtrack_coeff < 1:
            self._value_error(f"`backtrack_coeff` must be in (0, 1); got {self.backtrack_coeff}")
        if not (isinstance(self.cg_iters, int) and self.cg_iters >= 1):
            self._value_error(f"`cg_iters` must be a positive integer; got {self.cg_iters}")
        if self.cg_damping < 0:
            self._value_error(f"`cg_damping` must be >= 0; got {self.cg_damping}")

    def get_default_learner_class(self):
        from harl_rllib.algorithms.hatrpo.torch.hatrpo_torch_learner import HATRPOTorchLearner

        return HATRPOTorchLearner


class HATRPO(HAAlgorithm):
    @classmethod
    def get_default_config(cls) -> HATRPOConfig:
        return HATRPOConfig()
