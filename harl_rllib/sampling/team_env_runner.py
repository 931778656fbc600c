"""`TeamEnvRunner`: samples team envs into dense arrays (a `TeamRollout`).

RLlib's multi-agent runner keeps a `MultiAgentEpisode` per env, runs its env-to-module and
module-to-env connector pipelines and logs metrics at every step, and the learner then walks
the same episodes again per agent and step; on MPE that is two thirds of an iteration. A team
env (every agent acts at every step, envs/contract.py) needs none of it: per step, each actor
module runs once over all B envs (agents that share a module together), actions are sampled
in torch, and observations, actions, log-probabilities, rewards, ends, alive flags and global
states go into preallocated (T, B, ...) arrays. Episode metrics are logged once per finished
episode, under RLlib's and our usual names.

The runner is an `HAEnvRunner`: env creation (the same B sub-envs), weight sync, the
checkpointed RNGs, the env-boundary checks and the bounded restart of failing envs are the
same on both paths. Configs whose `sampling_path()` is "episodes" use RLlib's loop unchanged.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from typing import Any

import numpy as np
import torch
import tree
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical
from ray.rllib.env.env_runner import NUM_ENV_STEP_FAILURES_LIFETIME
from ray.rllib.utils.metrics import (
    ENV_STEP_TIMER,
    EPISODE_AGENT_RETURN_MEAN,
    EPISODE_AGENT_STEPS,
    EPISODE_DURATION_SEC_MEAN,
    EPISODE_LEN_MAX,
    EPISODE_LEN_MEAN,
    EPISODE_LEN_MIN,
    EPISODE_MODULE_RETURN_MEAN,
    EPISODE_RETURN_MAX,
    EPISODE_RETURN_MEAN,
    EPISODE_RETURN_MIN,
    NUM_AGENT_STEPS_SAMPLED,
    NUM_AGENT_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_EPISODES,
    NUM_EPISODES_LIFETIME,
    NUM_MODULE_STEPS_SAMPLED,
    NUM_MODULE_STEPS_SAMPLED_LIFETIME,
)
from ray.rllib.utils.numpy import convert_to_numpy
from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action

from harl_rllib.core.actor import HIDDEN
from harl_rllib.core.callbacks import episode_window, log_team_episode
from harl_rllib.core.env_checks import EnvValueError, describe_env
from harl_rllib.core.env_runner import HAEnvRunner
from harl_rllib.envs.contract import ALIVE_KEY, EPISODE_STATS_KEY, STATE_KEY
from harl_rllib.sampling.rollout import TeamRollout


class _EnvFailed(Exception):
    """A sub-env raised; the rollout restarts (as RLlib's loop does)."""


def draw_actions(module: Any, inputs: torch.Tensor, explore: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Actions from an actor's distribution inputs, and their log-probabilities (zeros for the
    mode, when not exploring). A categorical is drawn here the way RLlib's TorchCategorical
    draws it (torch's Categorical: logits normalized by logsumexp, their softmax, one multinomial
    draw with replacement), so both paths draw the same actions from one seed, without building
    two distribution objects per module and step (half of the actors' time on SMAX)."""
    cls = module.get_exploration_action_dist_cls() if explore else module.get_inference_action_dist_cls()
    if cls is TorchCategorical:
        logits = inputs - inputs.logsumexp(dim=-1, keepdim=True)
        if not explore:
            return logits.argmax(dim=-1), torch.zeros(len(logits))
        sampled = torch.multinomial(torch.softmax(logits, dim=-1), 1, True).squeeze(-1)
        return sampled, logits.gather(-1, sampled[:, None]).squeeze(-1)
    dist = cls.from_logits(inputs)
    if not explore:
        return dist.to_deterministic().sample(), torch.zeros(len(inputs))
    sampled = dist.sample()
    return sampled, dist.logp(sampled)


class TeamEnvRunner(HAEnvRunner):
    """See module doc. `sample()` returns `[TeamRollout]` on the team path."""

    _team: dict[str, Any] | None = None  # per-env carry between sample() calls
    _episode_base: int | None = None

    def _sample(self, *, num_timesteps=None, num_episodes=None, explore, random_actions=False, force_reset=False):
        if self.config.sampling_path() != "team" or num_timesteps is None or random_actions:
            self._team = None  # RLlib's loop steps the vector env: ours starts afresh after it
            return super()._sample(
                num_timesteps=num_timesteps,
                num_episodes=num_episodes,
                explore=explore,
                random_actions=random_actions,
                force_reset=force_reset,
            )
        T = max(1, math.ceil(num_timesteps / self.num_envs))
        while True:
            try:
                if force_reset or self._needs_initial_reset or self._team is None:
                    self._team_reset()
                    force_reset = False
                batched = hasattr(self.env, "team_step")
                return [self._batched_rollout(T, explore) if batched else self._team_rollout(T, explore)]
            except _EnvFailed:
                self.make_env()  # RLlib's recovery: rebuild the envs, reset (seeded) and sample again

    @contextlib.contextmanager
    def _env_call(self, call: str):
        """A sub-env's reset or step: a failure is counted (`_env_failed`: bounded) and restarts
        the rollout."""
        try:
            yield
        except Exception as e:
            if call == "step":
                self.metrics.log_value(NUM_ENV_STEP_FAILURES_LIFETIME, 1, reduce="lifetime_sum")
            self._env_failed(e, call)
            raise _EnvFailed from e

    # ---- set-up -------------------------------------------------------------------------

    def _team_layout(self) -> dict[str, Any]:
        """What does not change between rollouts: agents, modules, spaces, the state's form."""
        spec = self.config.get_team_spec()
        agents = list(spec.agents)
        by_module: dict[str, list[str]] = {}
        for a in agents:
            by_module.setdefault(self.config.module_for(a), []).append(a)
        env = self.env.envs[0].unwrapped
        # A recurrent actor's initial GRU state (layers, H); feed-forward actors have none.
        initial = {}
        for mid, members in by_module.items():
            state = self.module[mid].get_initial_state()
            if state:
                initial |= dict.fromkeys(members, np.asarray(convert_to_numpy(state)[HIDDEN], np.float32))
        devices = {}
        for mid in by_module:
            self.module[mid].eval()  # see `_compute_actions`
            devices[mid] = next(self.module[mid].parameters()).device  # a GPU with num_gpus_per_env_runner > 0
        return {
            "agents": agents,
            "devices": devices,
            "initial_states": initial,
            "index": {a: i for i, a in enumerate(agents)},
            "by_module": by_module,
            "action_spaces": {a: env.get_action_space(a) for a in agents},
            "has_state": spec.has_state,
            "fp": self.config.state_type == "FP",
        }

    def _team_reset(self) -> None:
        """Reset every sub-env (seeded on the first reset, as RLlib's runner) and the carry."""
        seed = self._seed if self._needs_initial_reset else None
        layout = self._team_layout()
        if hasattr(self.env, "team_step"):  # an env that steps the team as arrays itself (SMAX)
            with self._env_call("reset"):
                view, obs, infos = self.env.team_reset(seed), None, None
        else:
            view = None
            obs, infos = self._try_env_reset(seed=seed)
        self._needs_initial_reset = False
        B = self.num_envs
        self._team = {
            **layout,
            "view": view,
            "obs": list(obs or []),
            "infos": list(infos or []),
            "returns": np.zeros((B, len(layout["agents"]))),
            "lengths": np.zeros(B, np.int64),
            "started": [time.time()] * B,
            "ended": [False] * B,
            "episode": np.array([self._new_episode_id() for _ in range(B)], np.int64),
            "h": {a: np.repeat(h[None], B, axis=0) for a, h in layout["initial_states"].items()},
        }

    def _new_episode_id(self) -> int:
        """An id no other episode of this run has: keys the critic's GRU state carried from one
        rollout to the next (core/fragments.py) and the replay buffer's links between an
        episode's rows (core/replay.py). Runners count apart, from a random base drawn per runner
        process (ids must not repeat those a checkpointed buffer holds after a restore)."""
        if self._episode_base is None:
            self._episode_base = (secrets.randbits(22) << 40) | (self.worker_index << 28)
            self._episodes_started = 0
        self._episodes_started += 1
        return self._episode_base + self._episodes_started

    def _episode_started(self, b: int) -> None:
        """Env b starts a new episode: a new id, the actors' initial GRU states."""
        c = self._team
        c["episode"][b] = self._new_episode_id()
        for a, h in c["initial_states"].items():
            c["h"][a][b] = h

    # ---- the loop -----------------------------------------------------------------------

    def _team_rollout(self, T: int, explore: bool) -> TeamRollout:
        c = self._team
        agents, B = c["agents"], self.num_envs
        first = c["obs"][0]
        one_obs = {a: first[a] for a in agents}
        arrays = self._allocate(
            T,
            self._obs_arrays(T, one_obs),
            self._obs_arrays(T, one_obs) if self.config.rollout_next_obs else {},
            self._state_of(first, c["infos"][0]).shape,
        )
        obs, alive, state = (arrays[k] for k in ("obs", "alive", "state"))
        dict_obs = {a: isinstance(obs[a], dict) for a in agents}
        for t in range(T):
            for b in range(B):
                if c["ended"][b]:
                    self._reset_ended(b)
                o, info = c["obs"][b], c["infos"][b]
                for a in agents:
                    if a not in o:
                        raise EnvValueError(self._contract_error(a))
                    if dict_obs[a]:
                        for key, dst in obs[a].items():
                            dst[t, b] = o[a][key]
                    else:
                        obs[a][t, b] = o[a]
                    alive[a][t, b] = float((info.get(a) or {}).get(ALIVE_KEY, True))
                state[t, b] = self._state_of(o, info)
            arrays["episode_id"][t], arrays["env_t"][t] = c["episode"], c["lengths"]
            to_env = self._compute_actions(obs, t, explore, arrays, T)
            with self.metrics.log_time(ENV_STEP_TIMER):  # the B envs' step, as RLlib times its vector env
                for b in range(B):
                    action = {a: to_env[a][b] for a in agents}
                    self._team_step(b, t, action, arrays)
        self._log_steps(T * B)
        return TeamRollout(agents=tuple(agents), **arrays)

    def _obs_arrays(self, T: int, one_obs: dict[str, Any]) -> dict[str, Any]:
        """(T, B, ...) float32 arrays for every agent's observations, shaped like `one_obs`."""
        return {
            a: tree.map_structure(lambda x: np.empty((T, self.num_envs, *np.shape(x)), np.float32), o)
            for a, o in one_obs.items()
        }

    def _allocate(self, T: int, obs: dict[str, Any], next_obs: dict[str, Any], state_shape: tuple) -> dict[str, Any]:
        """The rollout's (T, B, ...) arrays around the given observation arrays, from the state's
        (k, S) shape; `actions` fill in at the first step (their shape comes from the actors)."""
        B, n = self.num_envs, len(obs)
        return {
            "obs": obs,
            "actions": {},
            "logp": {a: np.empty((T, B), np.float32) for a in obs},
            "alive": {a: np.empty((T, B), np.float32) for a in obs},
            "rewards": np.zeros((T, B, n), np.float32),
            "terminated": np.zeros((T, B), bool),
            "truncated": np.zeros((T, B), bool),
            "state": np.empty((T, B, *state_shape), np.float32),
            "next_state": np.empty((T, B, *state_shape), np.float32),
            "episode_id": np.empty((T, B), np.int64),
            "env_t": np.empty((T, B), np.int64),
            "actor_states": {
                a: np.empty((T, B, *h.shape), np.float32) for a, h in self._team["initial_states"].items()
            },
            "next_obs": next_obs,
        }

    def _batched_rollout(self, T: int, explore: bool) -> TeamRollout:
        """The rollout of an env that steps all B envs as arrays itself (`team_reset`/`team_step`,
        e.g. SMAX: one jitted call per step, ended battles restarted in the same call)."""
        c = self._team
        agents, B = c["agents"], self.num_envs
        view = c["view"]
        # The env's arrays are team arrays (B, n, ...): the rollout keeps them so, one copy per
        # step each, and hands every agent its view (T, B, ...) of them.
        team_obs = {key: np.empty((T, *x.shape), np.float32) for key, x in view["obs"].items()}
        team_next = {key: np.empty_like(x) for key, x in team_obs.items()} if self.config.rollout_next_obs else {}
        team_alive = np.empty((T, *view["alive"].shape), np.float32)

        def per_agent(team: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
            return {a: {key: x[:, :, i] for key, x in team.items()} for i, a in enumerate(agents)} if team else {}

        arrays = self._allocate(T, per_agent(team_obs), per_agent(team_next), view["state"].shape[1:])
        arrays["alive"] = {a: team_alive[:, :, i] for i, a in enumerate(agents)}
        obs, state = arrays["obs"], arrays["state"]
        rewards, terminated, truncated, next_state = (
            arrays[k] for k in ("rewards", "terminated", "truncated", "next_state")
        )
        for t in range(T):
            for key, x in team_obs.items():
                x[t] = view["obs"][key]
            team_alive[t] = view["alive"]
            state[t] = view["state"]
            arrays["episode_id"][t], arrays["env_t"][t] = c["episode"], c["lengths"]
            to_env = self._compute_actions(obs, t, explore, arrays, T)
            with self.metrics.log_time(ENV_STEP_TIMER):
                with self._env_call("step"):
                    step, view = self.env.team_step(np.stack([to_env[a] for a in agents], axis=1))
            if self.config.check_env_values:
                lengths = c["lengths"] + 1
                self.checker.check_arrays(
                    step["reward"],
                    (step["next_state"], view["state"]),
                    (view["obs"], step["next_obs"]),  # the final observations of ended battles too
                    agents,
                    where=lambda b: f"env runner {self.worker_index}, env {b}, step {lengths[b]} of its episode",  # noqa: B023
                )
            rewards[t] = step["reward"][:, None]
            terminated[t], truncated[t], next_state[t] = step["terminated"], step["truncated"], step["next_state"]
            for key, x in team_next.items():
                x[t] = step["next_obs"][key]
            c["returns"] += rewards[t]
            c["lengths"] += 1
            for b in np.flatnonzero(step["ended"]):
                self._log_episode(int(b), {key: float(v[b]) for key, v in step["stats"].items()})
                self._episode_started(int(b))  # restarted in the same call
        c["view"] = view
        self._log_steps(T * B)
        return TeamRollout(agents=tuple(agents), **arrays)

    def _compute_actions(self, obs: dict, t: int, explore: bool, arrays: dict, T: int) -> dict:
        """One forward per actor module over all B envs (its agents stacked); actions sampled
        in torch (the mode when not exploring), written into the rollout's arrays at step t.
        A recurrent actor steps from the GRU states carried per env (recorded before the step)."""
        c, B = self._team, self.num_envs
        actions, logp = arrays["actions"], arrays["logp"]
        # The run's env steps so far, counted as RLlib's runner does (warm-up, schedules).
        runners = self.config.num_env_runners or 1
        global_t = (self.num_env_steps_sampled_lifetime // runners + t * B) * runners
        for mid, members in c["by_module"].items():
            module, device = self.module[mid], c["devices"][mid]
            parts = [obs[a] for a in members]
            if isinstance(parts[0], dict):
                x = {k: torch.from_numpy(np.concatenate([p[k][t] for p in parts])).to(device) for k in parts[0]}
            else:
                x = torch.from_numpy(np.concatenate([p[t] for p in parts])).to(device)
            batch = {Columns.OBS: x}
            recurrent = members[0] in c["h"]
            if recurrent:
                batch[Columns.OBS] = tree.map_structure(lambda v: v[:, None], x)  # a time axis of 1
                h = np.concatenate([c["h"][a] for a in members])
                batch[Columns.STATE_IN] = {HIDDEN: torch.from_numpy(h).to(device)}
            with torch.inference_mode():
                # The modules' own forward passes: RLlib's public wrappers switch every
                # submodule to eval mode and back at each call (a third of a SMAX step);
                # the modules are put in eval mode once, in `_team_layout`.
                if explore:
                    out = module._forward_exploration(batch, t=global_t)
                else:
                    out = module._forward_inference(batch)
                if Columns.ACTIONS in out:  # the off-policy actors act themselves (noise, warm-up)
                    sampled = out[Columns.ACTIONS]
                    sampled_logp = torch.zeros(sampled.shape[0])
                else:
                    inputs = out[Columns.ACTION_DIST_INPUTS]
                    sampled, sampled_logp = draw_actions(module, inputs[:, 0] if recurrent else inputs, explore)
            sampled, sampled_logp = sampled.cpu().numpy(), sampled_logp.cpu().numpy()
            h_out = out[Columns.STATE_OUT][HIDDEN].cpu().numpy() if recurrent else None
            for j, a in enumerate(members):
                rows = slice(j * B, (j + 1) * B)
                if a not in actions:
                    actions[a] = np.empty((T, *sampled[rows].shape), sampled.dtype)
                actions[a][t] = sampled[rows]
                logp[a][t] = sampled_logp[rows]
                if recurrent:
                    arrays["actor_states"][a][t] = c["h"][a]
                    c["h"][a] = h_out[rows]
        return {a: self._for_env(a, actions[a][t]) for a in c["agents"]}

    def _for_env(self, agent: str, action: np.ndarray) -> np.ndarray:
        """RLlib's NormalizeAndClipActions for Box actions: [-1, 1] → the space's bounds."""
        space = self._team["action_spaces"][agent]
        if space.shape and np.issubdtype(space.dtype, np.floating):
            if self.config.normalize_actions:
                return unsquash_action(action, space)
            if self.config.clip_actions:
                return clip_action(action, space)
        return action

    def _team_step(self, b: int, t: int, action: dict, arrays: dict[str, Any]) -> None:
        """Step env b, record the step into the rollout's arrays, and log an episode that ended."""
        c = self._team
        rewards, terminated, truncated = arrays["rewards"], arrays["terminated"], arrays["truncated"]
        env = self.env.envs[b]
        with self._env_call("step"):
            o, r, term, trunc, info = env.step(action)
        length = int(c["lengths"][b]) + 1
        if self.config.check_env_values:
            self.checker.check(
                o, info, r, where=f"env runner {self.worker_index}, env {b}, step {length} of its episode"
            )
        for a, value in r.items():
            rewards[t, b, c["index"][a]] = value
        ended_by_term, ended_by_trunc = bool(term.get("__all__")), bool(trunc.get("__all__"))
        terminated[t, b] = ended_by_term and not ended_by_trunc
        truncated[t, b] = ended_by_trunc
        arrays["next_state"][t, b] = self._state_of(o, info)
        for a, dst in arrays["next_obs"].items():
            if isinstance(dst, dict):
                for key, part in dst.items():
                    part[t, b] = o[a][key]
            else:
                dst[t, b] = o[a]
        c["returns"][b] += rewards[t, b]
        c["lengths"][b] = length
        if ended_by_term or ended_by_trunc:
            self._log_episode(b, (info.get(c["agents"][0]) or {}).get(EPISODE_STATS_KEY))
            c["ended"][b] = True  # reset before its next step (as RLlib's vector env), not now
        c["obs"][b], c["infos"][b] = o, info

    def _reset_ended(self, b: int) -> None:
        """Reset env b, whose episode ended at its last step. Lazily, at its next step: an env
        whose episode ends a rollout is checkpointed before its reset draws the next start, so a
        resumed run draws the same start (exact resume, as on the episode path)."""
        c = self._team
        with self._env_call("reset"):
            o, info = self.env.envs[b].reset()
        if self.config.check_env_values:
            self.checker.check(o, info, None, where=f"env runner {self.worker_index}, env {b}, reset")
        c["obs"][b], c["infos"][b], c["ended"][b] = o, info, False
        self._episode_started(b)

    def _state_of(self, obs: dict, info: dict) -> np.ndarray:
        """(k, S): info['state'] of the first agent (EP) or of each agent (FP), or without an
        env state all agents' flat observations (as the episode path's `team_states`)."""
        c = self._team
        agents = c["agents"]
        if c["has_state"]:
            if c["fp"]:
                return np.stack([np.asarray(info[a][STATE_KEY], np.float32) for a in agents])
            return np.asarray(info[agents[0]][STATE_KEY], np.float32)[None]
        parts = [
            np.asarray(o["obs"] if isinstance(o, dict) else o, np.float32).ravel() for o in (obs[a] for a in agents)
        ]
        return np.concatenate(parts)[None]

    def _contract_error(self, agent: str) -> str:
        return (
            f"Env {describe_env(self.config)} gave no observation for agent {agent!r}: the team path needs every "
            "agent in every step (envs/contract.py). Keep dead agents in the dicts with info['alive']=False, or "
            "sample episodes instead: config.env_runners(sampling='episodes')."
        )

    # ---- metrics ------------------------------------------------------------------------

    def _log_steps(self, steps: int) -> None:
        c = self._team
        self.metrics.log_value(NUM_ENV_STEPS_SAMPLED, steps, reduce="sum")
        self.metrics.log_value(NUM_ENV_STEPS_SAMPLED_LIFETIME, steps, reduce="lifetime_sum", with_throughput=True)
        for mid, members in c["by_module"].items():
            self.metrics.log_value((NUM_MODULE_STEPS_SAMPLED, mid), steps * len(members), reduce="sum")
            self.metrics.log_value(
                (NUM_MODULE_STEPS_SAMPLED_LIFETIME, mid), steps * len(members), reduce="lifetime_sum"
            )
            for a in members:
                self.metrics.log_value((NUM_AGENT_STEPS_SAMPLED, a), steps, reduce="sum")
                self.metrics.log_value((NUM_AGENT_STEPS_SAMPLED_LIFETIME, a), steps, reduce="lifetime_sum")

    def _log_episode_metrics(self, length, ret, sec, agents=None, modules=None, agent_steps=None) -> None:
        """RLlib's per-episode metrics, under its names, reductions and window, logged value by
        value: RLlib's `log_dict` walks a nested dict per call, which is most of an episode's
        logging cost on SMAX (a 3m battle lasts ~20 steps). Both sampling paths use it."""
        runners = self.config.num_env_runners or 1
        win = max(1, math.ceil(self.config.metrics_num_episodes_for_smoothing / runners))
        log = self.metrics.log_value
        log(EPISODE_LEN_MEAN, length, window=win)
        log(EPISODE_RETURN_MEAN, ret, window=win)
        log(EPISODE_DURATION_SEC_MEAN, sec, window=win)
        for prefix, values in (
            (EPISODE_AGENT_RETURN_MEAN, agents),
            (EPISODE_AGENT_STEPS, agent_steps),
            (EPISODE_MODULE_RETURN_MEAN, modules),
        ):
            for key, value in (values or {}).items():
                log((prefix, key), value, window=win)
        for reduce, len_key, ret_key in (
            ("min", EPISODE_LEN_MIN, EPISODE_RETURN_MIN),
            ("max", EPISODE_LEN_MAX, EPISODE_RETURN_MAX),
        ):
            log(len_key, length, reduce=reduce, window=win)
            log(ret_key, ret, reduce=reduce, window=win)

    def _log_episode(self, b: int, stats: dict | None) -> None:
        """One finished episode: RLlib's episode metrics, the team return and the env's stats
        (as TeamMetricsCallback logs them on the episode path)."""
        c = self._team
        returns, length = c["returns"][b], int(c["lengths"][b])
        agent_returns = {a: float(returns[i]) for i, a in enumerate(c["agents"])}
        module_returns = {mid: sum(agent_returns[a] for a in members) for mid, members in c["by_module"].items()}
        self._log_episode_metrics(
            length,
            float(returns.sum()),
            time.time() - c["started"][b],
            agent_returns,
            module_returns,
            dict.fromkeys(c["agents"], length),
        )
        self.metrics.log_value(NUM_EPISODES, 1, reduce="sum")
        self.metrics.log_value(NUM_EPISODES_LIFETIME, 1, reduce="lifetime_sum")
        log_team_episode(self.metrics, float(returns.mean()), stats, episode_window(self.config))
        c["returns"][b] = 0.0
        c["lengths"][b] = 0
        c["started"][b] = time.time()
