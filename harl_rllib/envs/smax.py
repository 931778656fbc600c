"""SMAX (package `jaxmarl`): StarCraft-like micromanagement in JAX, no game binary needed.

Our team is SMAX's allies; the enemies follow jaxmarl's built-in heuristic
(`HeuristicEnemySMAX`, as in JaxMARL's own SMAX baselines). The adapter follows
harl_rllib's env contract (envs/contract.py) the way the SMAC adapter does: available
actions as ``obs["action_mask"]``, dead allies kept in the episode with
``info["alive"] = False`` (SMAX leaves them only the "stop" action), the team reward,
and ``info["episode_stats"]["battle_won"]`` at the end of every episode (the win rate).

Speed: every env step is one jitted call. `SMAXVectorEnv` steps all of an env runner's
envs in ONE jitted, vmapped call (JAX dispatch costs ~1 ms per call, more than a 3m
step), compiled once per runner; `HAEnvRunner` uses it through ``make_vector_env``.
Compiled programs go to a persistent JAX cache (``$JAX_COMPILATION_CACHE_DIR``, default
``~/.cache/harl_rllib/jax``) so later runs and other runners on the node skip most of
the 9–37 s XLA compile.
"""

from __future__ import annotations

import math
import os
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.env.vector.vector_multi_agent_env import VectorMultiAgentEnv

from harl_rllib.envs.contract import ALIVE_KEY, EPISODE_STATS_KEY, STATE_KEY, MaskedTeamSpaces

# jaxmarl's SMAC-named maps and its SMACv2-style random scenarios (unit types and
# start positions drawn each episode). Checked against jaxmarl at construction.
SMAX_TASKS = (
    "3m",
    "8m",
    "25m",
    "5m_vs_6m",
    "10m_vs_11m",
    "27m_vs_30m",
    "2s3z",
    "3s5z",
    "3s5z_vs_3s6z",
    "3s_vs_5z",
    "6h_vs_8z",
    "smacv2_5_units",
    "smacv2_10_units",
    "smacv2_20_units",
)

INSTALL_HINT = "pip install 'harl_rllib[smax]'  (or: pip install jaxmarl)"


def _jax():
    """Import jax/jaxmarl on first use (a few seconds) with the persistent compile cache on."""
    try:
        import jax
        from jaxmarl.environments.smax import map_name_to_scenario
        from jaxmarl.environments.smax.heuristic_enemy_smax_env import HeuristicEnemySMAX
    except ImportError as e:
        raise ImportError(f"SMAX needs the `jaxmarl` package ({e}). Install it with: {INSTALL_HINT}") from e
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.expanduser("~/.cache/harl_rllib/jax")
    if jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return jax, map_name_to_scenario, HeuristicEnemySMAX


def battle_outcome(unit_alive, num_allies: int):
    """(won, lost) of a battle from its units' alive flags, allies first: won when every enemy
    is dead and an ally lives; a draw (both sides dead) is lost. Works on jax and numpy arrays."""
    allies, enemies = unit_alive[:num_allies], unit_alive[num_allies:]
    return ~enemies.any() & allies.any(), ~allies.any()


class SMAXEngine:
    """B SMAX envs stepped by one jitted vmapped call, with next-step auto-reset.

    `step(actions, reset_mask)` steps the envs not in `reset_mask` and resets those in
    it, in the same call; it returns numpy arrays only (one device→host transfer, `_packed`).
    """

    def __init__(self, task: str, num_envs: int, env_kwargs: dict[str, Any], seed: int | None) -> None:
        jax, map_name_to_scenario, HeuristicEnemySMAX = _jax()
        self.jax = jax
        self.env = HeuristicEnemySMAX(scenario=map_name_to_scenario(task), **env_kwargs)
        self.num_envs = num_envs
        self.n = self.env.num_allies
        self.allies = list(self.env.agents)
        self.key = jax.random.PRNGKey(0 if seed is None else seed)
        self._step = self._packed(jax.vmap(self._step_one))
        self.states = None

    def _view(self, state):
        """What the adapter needs from one env state, as arrays."""
        import jax.numpy as jnp

        inner = state.state
        obs = self.env._env.get_obs(inner)
        avail = self.env._env.get_avail_actions(inner)
        alive = inner.unit_alive
        allies_alive, enemies_alive = alive[: self.n], alive[self.n :]
        won, lost = battle_outcome(alive, self.n)
        return {
            "obs": jnp.stack([obs[a] for a in self.allies]).astype(jnp.float32),
            "world_state": self.env._env.get_world_state(inner).astype(jnp.float32),
            "avail": jnp.stack([avail[a] for a in self.allies]).astype(jnp.float32),
            "alive": allies_alive,
            "won": won,
            "lost": lost,
            "dead_allies": jnp.sum(~allies_alive),
            "dead_enemies": jnp.sum(~enemies_alive),
        }

    def _step_one(self, key, state, actions, reset):
        jax = self.jax
        k_step, k_reset = jax.random.split(key)
        _, stepped, rewards, dones, _ = self.env.step_env(
            k_step, state, {a: actions[i] for i, a in enumerate(self.allies)}
        )
        _, fresh = self.env.reset(k_reset)
        new = jax.tree.map(lambda r, s: jax.lax.select(reset, r, s), fresh, stepped)
        out = self._view(new)
        out["reward"] = rewards[self.allies[0]]  # SMAX gives every ally the team reward
        out["done"] = dones["__all__"] & ~reset
        return new, out

    def _step_autoreset_one(self, key, state, actions):
        """One step; an env whose battle ended is reset in the same call. Returns the view
        after the step (the final one where a battle ended: its state bootstraps a time-out)
        and the view the team acts on next (the new battle's where one ended)."""
        jax = self.jax
        k_step, k_reset = jax.random.split(key)
        _, stepped, rewards, dones, _ = self.env.step_env(
            k_step, state, {a: actions[i] for i, a in enumerate(self.allies)}
        )
        _, fresh = self.env.reset(k_reset)
        done = dones["__all__"]
        new = jax.tree.map(lambda r, s: jax.lax.select(done, r, s), fresh, stepped)
        final = self._view(stepped)
        final["reward"] = rewards[self.allies[0]]
        final["done"] = done
        return new, (final, self._view(new))

    def step_autoreset(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """All envs one step with same-step auto-reset (see `_step_autoreset_one`); numpy out.
        Compiled on first use (the team sampling path's step). The key is split inside the
        compiled call, and its outputs come back as one float32 array (`_packed`): each jax
        call and each array fetched from the device costs more than a 3m step's compute."""
        jax = self.jax
        if getattr(self, "_step_autoreset", None) is None:
            self._step_autoreset = self._packed(jax.vmap(self._step_autoreset_one))
        self.key, self.states, out = self._step_autoreset(self.key, self.states, actions)
        return out

    def _packed(self, step_all):
        """`step_all(keys, states, *args)` compiled as `(key, states, *args) → (next key, states,
        outputs as numpy)`: the per-env keys are split from the engine's key inside the call, and
        every output leaf comes back flattened into one (B, X) float32 array, unpacked here."""
        jax = self.jax
        import jax.numpy as jnp

        layout: list = []  # (treedef, [(shape, dtype) per leaf]), known once traced

        def run(key, states, *args):
            key, sub = jax.random.split(key)
            states, out = step_all(jax.random.split(sub, self.num_envs), states, *args)
            leaves, treedef = jax.tree.flatten(out)
            # float32 carries floats, bools and small counts (units, steps < 2^24) exactly.
            for leaf in leaves:
                assert leaf.dtype in (jnp.float32, jnp.bool_, jnp.int32), f"cannot pack {leaf.dtype}"
            layout[:] = [(treedef, [(leaf.shape[1:], np.dtype(leaf.dtype)) for leaf in leaves])]
            flat = jnp.concatenate([leaf.reshape(self.num_envs, -1).astype(jnp.float32) for leaf in leaves], axis=1)
            return key, states, flat

        compiled = jax.jit(run)

        def call(key, states, *args):
            key, states, flat = compiled(key, states, *args)
            flat = np.asarray(flat)
            treedef, specs = layout[0]
            leaves, offset = [], 0
            for shape, dtype in specs:
                size = math.prod(shape)
                part = flat[:, offset : offset + size].reshape(self.num_envs, *shape)
                offset += size
                leaves.append(
                    part if dtype == np.float32 else (part > 0.5) if dtype == np.bool_ else part.astype(dtype)
                )
            return key, states, jax.tree.unflatten(treedef, leaves)

        return call

    def step(self, actions: np.ndarray, reset_mask: np.ndarray) -> dict[str, np.ndarray]:
        self.key, self.states, out = self._step(self.key, self.states, actions, reset_mask)
        return out

    def units(self, index: int) -> dict[str, np.ndarray]:
        """Env `index`'s units now (allies first, then enemies) as numpy, for drawing a frame."""
        if self.states is None:
            raise RuntimeError("SMAX has no battle to render before reset()")
        if not 0 <= index < self.num_envs:
            raise IndexError(f"env index {index} out of range for {self.num_envs} envs")
        inner = self.states.state
        names = ("unit_positions", "unit_alive", "unit_teams", "unit_health", "unit_types", "prev_attack_actions")
        arrays = self.jax.device_get([getattr(inner, name) for name in names] + [inner.step])  # one transfer
        units: dict[str, Any] = {name: np.asarray(a[index]) for name, a in zip(names, arrays[:-1], strict=True)}
        units["step"] = int(arrays[-1][index])
        return units

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        """Reset all envs. The first call compiles; the second warms the step-after-reset path."""
        jax = self.jax
        if seed is not None:
            self.key = jax.random.PRNGKey(seed)
        if self.states is None:
            self.key, sub = jax.random.split(self.key)
            _, self.states = jax.vmap(self.env.reset)(jax.random.split(sub, self.num_envs))
        zeros = np.zeros((self.num_envs, self.n), np.int32)
        everything = np.ones(self.num_envs, bool)
        # Twice: the first output's dtypes can differ from a fresh reset's (weak types),
        # which would recompile at the first real step.
        self.step(zeros, everything)
        return self.step(zeros, everything)


class BattleFigure:
    """Draws SMAX battles with PIL, for recording episodes: a few ms a frame, and every frame the
    same size (`size`), as a GIF writer needs. Drawn at SUPERSAMPLE times the size and reduced,
    so edges are smooth. (matplotlib's text alone costs ~10 ms a frame.)

    The map's boundary; units as circles of their type's radius with jaxmarl's type letter
    (m marine, M marauder, s stalker, Z zealot, z zergling, h hydralisk), allies blue, enemies
    red, a health bar above; dead units as grey crosses; a line in the shooter's color from each
    unit that attacked in the last step to its target (thick: in range, so the shot could land;
    thin: out of range).
    """

    MAP_PIXELS = 640  # the map's longer side
    MARGIN = 10
    CAPTION = 30  # the band above the map
    SUPERSAMPLE = 2
    TEAM_COLORS = ((31, 119, 180), (214, 39, 40))  # allies, enemies
    DEAD, HEALTH, HEALTH_LOST = (150, 150, 150), (44, 160, 44), (200, 200, 200)

    def __init__(self, env: Any, title: str) -> None:
        from PIL import Image, ImageDraw, ImageFont

        self.env, self.title = env, title  # env: jaxmarl's SMAX (unit types, map size)
        self.n_allies, self.m = int(env.num_allies), int(env.num_movement_actions)
        self.radius = np.asarray(env.unit_type_radiuses, np.float64)
        self.max_health = np.asarray(env.unit_type_health, np.float64)
        self.attack_range = np.asarray(env.unit_type_attack_ranges, np.float64)
        self.map_w, self.map_h = float(env.map_width), float(env.map_height)
        k = self.SUPERSAMPLE
        self.scale = self.MAP_PIXELS * k / max(self.map_w, self.map_h)  # pixels per map unit, drawn
        self.origin = (self.MARGIN * k, (self.CAPTION + self.MARGIN) * k)  # the map's top-left, drawn
        width = round(self.map_w * self.scale) + 2 * self.MARGIN * k
        height = round(self.map_h * self.scale) + 2 * self.MARGIN * k + self.CAPTION * k
        self.size = (height // k, width // k)  # (H, W) of every frame
        self.background = Image.new("RGB", (width, height), "white")
        x0, y0 = self.origin
        ImageDraw.Draw(self.background).rectangle(
            (x0, y0, x0 + self.map_w * self.scale, y0 + self.map_h * self.scale), outline=(80, 80, 80), width=2 * k
        )
        self.caption_font = ImageFont.load_default(size=15 * k)
        # One letter font per unit type, sized to its circle.
        self.letter_fonts = [ImageFont.load_default(size=max(7.0, 1.3 * r * self.scale)) for r in self.radius]

    def _pixels(self, pos: np.ndarray) -> np.ndarray:
        """Map coordinates (y up) → drawn pixel coordinates (y down)."""
        x0, y0 = self.origin
        return np.stack([x0 + pos[..., 0] * self.scale, y0 + (self.map_h - pos[..., 1]) * self.scale], axis=-1)

    def draw(self, units: dict[str, Any]) -> np.ndarray:
        """The frame of `units` (`SMAXEngine.units`): (H, W, 3) uint8."""
        from PIL import ImageDraw

        image = self.background.copy()
        draw = ImageDraw.Draw(image)
        k, scale = self.SUPERSAMPLE, self.scale
        alive = units["unit_alive"].astype(bool)
        types, team = units["unit_types"].astype(int), units["unit_teams"].astype(int)
        pos = units["unit_positions"].astype(np.float64)
        xy = self._pixels(pos)
        radius = self.radius[types] * scale

        for i, j, in_range in self._attacks(units["prev_attack_actions"], pos, alive, types):
            # In the shooter's color, shifted to its left: two units shooting each other show two lines.
            d = xy[j] - xy[i]
            shift = np.array([d[1], -d[0]]) / max(float(np.hypot(*d)), 1e-6) * 1.5 * k
            a, b = xy[i] + shift, xy[j] + shift
            draw.line((*a, *b), fill=self.TEAM_COLORS[team[i]], width=(2 if in_range else 1) * k)
        bar = 1.3 * scale  # health bar length
        health = np.clip(units["unit_health"] / self.max_health[types], 0.0, 1.0)
        for i in np.flatnonzero(alive):
            (x, y), r = xy[i], radius[i]
            draw.ellipse((x - r, y - r, x + r, y + r), fill=self.TEAM_COLORS[team[i]], outline="black", width=k)
            letter = self.env.unit_type_shorthands[types[i]]
            draw.text((x, y), letter, fill="white", font=self.letter_fonts[types[i]], anchor="mm")
            top = y - r - 0.45 * scale
            draw.rectangle((x - bar / 2, top, x + bar / 2, top + 2 * k), fill=self.HEALTH_LOST)
            draw.rectangle((x - bar / 2, top, x - bar / 2 + bar * health[i], top + 2 * k), fill=self.HEALTH)
        for i in np.flatnonzero(~alive):
            (x, y), r = xy[i], 0.3 * scale
            draw.line((x - r, y - r, x + r, y + r), fill=self.DEAD, width=2 * k)
            draw.line((x - r, y + r, x + r, y - r), fill=self.DEAD, width=2 * k)
        n = self.n_allies
        caption = (
            f"{self.title}    step {units['step']}    allies {alive[:n].sum()}/{n}    "
            f"enemies {alive[n:].sum()}/{alive.size - n}"
        )
        draw.text((image.width / 2, self.CAPTION * k / 2), caption, fill="black", font=self.caption_font, anchor="mm")
        return np.asarray(image.reduce(k))

    def _attacks(self, action: np.ndarray, pos: np.ndarray, alive: np.ndarray, types: np.ndarray):
        """(shooter, target, target in range) of last step's attacks by units alive now. jaxmarl's
        attack action m + k targets enemy k for an ally and ally n - 1 - k for an enemy (each
        team sees the other in that order); actions below m (jaxmarl stores 0) are moves."""
        m, n = self.m, self.n_allies
        action = action.astype(int)
        shooters = np.flatnonzero((action >= m) & alive)
        k = action[shooters] - m
        targets = np.where(shooters < n, n + k, n - 1 - k)
        ok = (targets >= 0) & (targets < alive.size)
        shooters, targets = shooters[ok], targets[ok]
        dist = np.linalg.norm(pos[shooters] - pos[targets], axis=-1)
        return zip(shooters, targets, dist < self.attack_range[types[shooters]], strict=True)


class SMAXTeamEnv(MultiAgentEnv):
    """One SMAX battle as a team MultiAgentEnv (harl_rllib's contract).

    env_config: ``task`` (a SMAX map, see SMAX_TASKS; "3m" by default), ``state_type``
    ("EP": SMAX's world state; "FP": the world state, the agent's own observation and
    its one-hot id, like HARL's SMAC FP state), ``obs_agent_id`` (False, as jaxmarl: the
    agent's one-hot id appended to its observation), ``seed``, and any keyword of jaxmarl's
    SMAX (``max_steps`` (100), ``walls_cause_death``, ``see_enemy_actions``, ...).
    """

    # Its vector env (SMAXVectorEnv) also steps the team as arrays: the team sampling path.
    team_vector_env = True

    def __init__(self, config: dict[str, Any] | None = None, *, num_envs: int = 1) -> None:
        super().__init__()
        config = dict(config or {})
        self.task = config.pop("task", None) or config.pop("map_name", "3m")
        self.state_type = config.pop("state_type", "EP")
        obs_agent_id = bool(config.pop("obs_agent_id", False))
        seed = config.pop("seed", None)
        config.pop("render_mode", None)  # frames are drawn here, from the state (`render`): any mode
        if config.pop("continuous_actions", False):
            raise ValueError("SMAX's actions are discrete; continuous_actions must be False")
        if self.task not in SMAX_TASKS:
            raise ValueError(f"Unknown SMAX task {self.task!r}; known tasks: {', '.join(SMAX_TASKS)}")
        if self.state_type not in ("EP", "FP"):
            raise ValueError(f"state_type must be 'EP' or 'FP'; got {self.state_type!r}")
        self.engine = SMAXEngine(self.task, num_envs, config, seed)
        env = self.engine.env
        self.spaces = MaskedTeamSpaces(
            self.engine.n, int(env.obs_size), env.num_ally_actions, int(env.state_size), self.state_type, obs_agent_id
        )
        self.spaces.apply(self)
        self._figure: BattleFigure | None = None  # render()'s, made on first use

    @classmethod
    def make_vector_env(cls, config: dict[str, Any], num_envs: int) -> SMAXVectorEnv:
        """Used by HAEnvRunner: all of a runner's envs in one jitted vmapped step."""
        return SMAXVectorEnv(cls(config, num_envs=num_envs))

    # ---- converting one env's slice of the engine output to RLlib's dicts ----
    def _env_dicts(self, out: dict[str, np.ndarray], i: int):
        obs, avail, alive = out["obs"][i], out["avail"][i], out["alive"][i]
        world = out["world_state"][i]
        obs_dict, infos = {}, {}
        for k, a in enumerate(self.possible_agents):
            obs_dict[a] = {"obs": self.spaces.obs(obs[k], k), "action_mask": avail[k]}
            state = self.spaces.state(world, obs[k], k)
            infos[a] = {STATE_KEY: state, ALIVE_KEY: bool(alive[k])}
        return obs_dict, infos

    def _step_dicts(self, out: dict[str, np.ndarray], i: int):
        obs_dict, infos = self._env_dicts(out, i)
        done = bool(out["done"][i])
        # A battle ends in a win, a loss (a draw, both sides dead, counts as lost) or
        # at max_steps: only the time limit is a truncation.
        terminated = done and bool(out["won"][i] or out["lost"][i])
        truncated = done and not terminated
        if done:
            stats = {
                "battle_won": float(out["won"][i]),
                "dead_allies": float(out["dead_allies"][i]),
                "dead_enemies": float(out["dead_enemies"][i]),
            }
            for info in infos.values():
                info[EPISODE_STATS_KEY] = stats
        reward = float(out["reward"][i])
        rewards = {a: reward for a in self.possible_agents}
        terms = {a: terminated for a in self.possible_agents} | {"__all__": terminated}
        truncs = {a: truncated for a in self.possible_agents} | {"__all__": truncated}
        return obs_dict, rewards, terms, truncs, infos

    def _actions(self, action_dicts: list[dict]) -> np.ndarray:
        actions = np.zeros((self.engine.num_envs, self.engine.n), np.int32)
        for i, d in enumerate(action_dicts):
            for k, a in enumerate(self.possible_agents):
                if a in d:
                    actions[i, k] = int(d[a])
        return actions

    # ---- single-env MultiAgentEnv API ----
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.agents = list(self.possible_agents)
        return self._env_dicts(self.engine.reset(seed), 0)

    def step(self, action_dict: dict[str, Any]):
        out = self.engine.step(self._actions([action_dict]), np.zeros(1, bool))
        result = self._step_dicts(out, 0)
        if result[2]["__all__"] or result[3]["__all__"]:
            self.agents = []
        return result

    def render(self) -> np.ndarray:
        """The battle now as an (H, W, 3) uint8 frame (see `BattleFigure`); no render_mode needed."""
        return self.render_env(0)

    def render_env(self, index: int) -> np.ndarray:
        """Env `index` of the engine's batch as a frame; one figure, made on first use, serves all."""
        if self._figure is None:
            self._figure = BattleFigure(self.engine.env._env, self.task)
        return self._figure.draw(self.engine.units(index))


class SMAXVectorEnv(VectorMultiAgentEnv):
    """All of a runner's SMAX envs as RLlib's VectorMultiAgentEnv (next-step auto-reset)."""

    def __init__(self, env: SMAXTeamEnv) -> None:
        super().__init__()
        self.team_env = env
        self.num_envs = env.engine.num_envs
        # RLlib reads spaces and agent ids per sub-env; one shared description serves all.
        self.envs = [env] * self.num_envs
        self.single_observation_spaces = env.observation_spaces
        self.single_action_spaces = env.action_spaces
        self.single_observation_space = gym.spaces.Dict(env.observation_spaces)
        self.single_action_space = gym.spaces.Dict(env.action_spaces)
        self._autoreset = np.zeros(self.num_envs, bool)

    def reset(self, *, seed: int | list | None = None, options: dict | None = None):
        if isinstance(seed, (list, tuple)):
            seed = seed[0]
        out = self.team_env.engine.reset(seed)
        self._autoreset[:] = False
        dicts = [self.team_env._env_dicts(out, i) for i in range(self.num_envs)]
        return [d[0] for d in dicts], [d[1] for d in dicts]

    def step(self, actions: list[dict]):
        reset_mask = self._autoreset.copy()
        out = self.team_env.engine.step(self.team_env._actions(actions), reset_mask)
        observations, rewards, terms, truncs, infos = [], [], [], [], []
        for i in range(self.num_envs):
            if reset_mask[i]:
                obs, info = self.team_env._env_dicts(out, i)
                agents = self.team_env.possible_agents
                rew = dict.fromkeys(agents, 0.0)
                term = dict.fromkeys(agents, False) | {"__all__": False}
                trunc = dict(term)
            else:
                obs, rew, term, trunc, info = self.team_env._step_dicts(out, i)
            observations.append(obs)
            rewards.append(rew)
            terms.append(term)
            truncs.append(trunc)
            infos.append(info)
            self._autoreset[i] = term["__all__"] or trunc["__all__"]
        return observations, rewards, terms, truncs, infos

    # ---- the team sampling path (harl_rllib/sampling): arrays in, arrays out ----
    def team_reset(self, seed: int | None = None) -> dict[str, Any]:
        """Reset every battle; the team's view as arrays (see `_team_view`)."""
        self._autoreset[:] = False
        return self._team_view(self.team_env.engine.reset(seed))

    def team_step(self, actions: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
        """Every battle one step, (B, n) actions; ended battles restart in the same call.
        Returns (the step: reward (B,), terminated, truncated (B,), next_state (B, k, S) and
        next_obs (the observations after the step, final ones where a battle ended), the
        episode stats (B,) of battles that ended; the view the team acts on next)."""
        final, nxt = self.team_env.engine.step_autoreset(np.asarray(actions, np.int32))
        done = final["done"].astype(bool)
        terminated = done & (final["won"].astype(bool) | final["lost"].astype(bool))
        final_view = self._team_view(final)
        step = {
            "reward": final["reward"].astype(np.float32),
            "terminated": terminated,
            "truncated": done & ~terminated,
            "next_state": final_view["state"],
            "next_obs": final_view["obs"],
            "ended": done,
            "stats": {
                "battle_won": final["won"].astype(np.float32),
                "dead_allies": final["dead_allies"].astype(np.float32),
                "dead_enemies": final["dead_enemies"].astype(np.float32),
            },
        }
        return step, self._team_view(nxt)

    def _team_view(self, out: dict[str, np.ndarray]) -> dict[str, Any]:
        """obs {"obs": (B, n, d), "action_mask": (B, n, A)} (agents in team order), alive (B, n), state (B, k, S)
        (EP: the world state; FP: world state ⊕ the agent's observation ⊕ its one-hot id)."""
        env = self.team_env
        obs, avail, world = out["obs"], out["avail"], out["world_state"]
        B, n = obs.shape[:2]
        if env.state_type == "EP":
            state = world[:, None].astype(np.float32)
        else:
            ids = np.broadcast_to(np.eye(n, dtype=np.float32), (B, n, n))
            state = np.concatenate([np.broadcast_to(world[:, None], (B, n, world.shape[-1])), obs, ids], axis=-1)
        return {
            "obs": {"obs": env.spaces.team_obs(obs), "action_mask": avail},
            "alive": out["alive"].astype(np.float32),
            "state": np.ascontiguousarray(state, np.float32),
        }

    def render_env(self, index: int = 0) -> np.ndarray:
        """Battle `index` as an (H, W, 3) uint8 frame of the state its latest observations describe
        (on RLlib's path an ended battle's last state until the step that restarts it)."""
        return self.team_env.render_env(index)

    def render(self) -> tuple[np.ndarray, ...]:
        """Every battle's frame (RLlib's VectorMultiAgentEnv API)."""
        return tuple(self.render_env(i) for i in range(self.num_envs))

    def close_extras(self, **kwargs) -> None:
        self.team_env.close()
