"""SMAC and SMACv2 (StarCraft II micromanagement) as team MultiAgentEnvs.

`SMACTeamEnv` wraps oxwhirl/smac's `StarCraft2Env`; `SMACv2TeamEnv` wraps oxwhirl/smacv2's
`StarCraftCapabilityEnvWrapper` (random unit types and start positions every episode).
Both follow harl_rllib's env contract (envs/contract.py):

* agents ``agent_0``.. (zero-padded from 11 allies on, so sorted order is SMAC's index
  order), every one in every step's dicts, dead ones included;
* observations ``{"obs": get_obs_agent(i), "action_mask": get_avail_agent_actions(i)}``;
  a dead agent may only take the no-op (action 0), which SMAC asserts;
* ``info["alive"]``: False once the agent died. SMAC's `death_tracker_ally`, which HARL's
  SMAC env turns into per-agent dones and thus active masks, or a no-op-only mask (SMAC
  never updates the tracker with ``reward_sparse=True``);
* ``info["state"]`` (see `SMACTeamEnv` for EP and FP) and `state_space`;
* the team reward to every agent; a battle that ends (won, lost, or all dead) terminates,
  the time limit truncates. SMAC signals the limit with ``info["episode_limit"]`` only when
  ``continuing_episode=True``; otherwise only its `timeouts` counter moves. Both are read;
* ``info["episode_stats"] = {"battle_won", "dead_allies", "dead_enemies"}`` on the last step
  (the win rate is THE SMAC metric);
* an unavailable action fails SMAC's assert. RLlib's env check steps each new env once with
  actions sampled from the action space, blind to the mask, so by default the adapter
  replaces an unavailable action with the agent's always-available one (no-op if dead,
  stop if alive), flags it in ``info["action_replaced"]`` and counts it in
  `replaced_actions`; ``unavailable_actions="raise"`` raises instead.

Needs StarCraft II with the SMAC maps (``bash cluster/install_sc2.sh``) and oxwhirl's
packages from GitHub: PyPI's ``smac`` is SMAC3, an unrelated hyperparameter optimizer.
Missing pieces raise at construction, with the command that fixes them.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from harl_rllib.envs.contract import ALIVE_KEY, EPISODE_STATS_KEY, STATE_KEY, MaskedTeamSpaces

logger = logging.getLogger(__name__)

NO_OP, STOP = 0, 1  # SMAC's actions 0 (only, and only for, the dead) and 1 (always for the living)
REPLACED_KEY = "action_replaced"

# The maps that ship in SMAC_Maps.zip (oxwhirl/smac's map registry).
SMAC_MAPS = (
    "3m",
    "8m",
    "25m",
    "5m_vs_6m",
    "8m_vs_9m",
    "10m_vs_11m",
    "27m_vs_30m",
    "MMM",
    "MMM2",
    "2s3z",
    "3s5z",
    "3s5z_vs_3s6z",
    "3s_vs_3z",
    "3s_vs_4z",
    "3s_vs_5z",
    "1c3s5z",
    "2m_vs_1z",
    "corridor",
    "6h_vs_8z",
    "2s_vs_1sc",
    "so_many_baneling",
    "bane_vs_bane",
    "2c_vs_64zg",
)

SMAC_PIP = "pip install 'git+https://github.com/oxwhirl/smac.git'"
SMACV2_PIP = "pip install 'git+https://github.com/oxwhirl/smacv2.git'"
SC2_ZIP = "http://blzdistsc2-a.akamaihd.net/Linux/SC2.4.10.zip"
SMAC_MAPS_ZIP = "https://github.com/oxwhirl/smac/releases/download/v0.1-beta1/SMAC_Maps.zip"
SMACV2_MAPS_ZIP = "https://github.com/oxwhirl/smacv2/releases/download/maps/SMAC_Maps.zip"
SMACV2_MAP_FILE = "32x32_flat"  # the one SC2 map behind all of SMACv2's 10gen_* scenarios

# ---- SMACv2 scenarios: HARL's smacv2_map_config/*.yaml (= SMACv2's sc2_gen_*.yaml) ----
# Every scenario shares these StarCraft2Env keywords; they differ in race and team sizes.
_SMACV2_COMMON: dict[str, Any] = {
    "continuing_episode": False,
    "difficulty": "7",
    "game_version": None,
    "move_amount": 2,
    "obs_all_health": True,
    "obs_instead_of_state": False,
    "obs_last_action": False,
    "obs_own_health": True,
    "obs_pathing_grid": False,
    "obs_terrain_height": False,
    "obs_timestep_number": False,
    "reward_death_value": 10,
    "reward_defeat": 0,
    "reward_negative_scale": 0.5,
    "reward_only_positive": True,
    "reward_scale": True,
    "reward_scale_rate": 20,
    "reward_sparse": False,
    "reward_win": 200,
    "replay_dir": "",
    "replay_prefix": "",
    "conic_fov": False,
    "use_unit_ranges": True,
    "min_attack_range": 2,
    "obs_own_pos": True,
    "num_fov_actions": 12,
    "state_last_action": True,
    "state_timestep_number": False,
    "step_mul": 8,
    "heuristic_ai": False,
    "debug": False,
}
# race -> (SC2 map name, unit types, their weights, types a team may not consist of only)
_SMACV2_RACES: dict[str, tuple[str, list[str], list[float], list[str]]] = {
    "protoss": ("10gen_protoss", ["stalker", "zealot", "colossus"], [0.45, 0.45, 0.1], []),
    "terran": ("10gen_terran", ["marine", "marauder", "medivac"], [0.45, 0.45, 0.1], ["medivac"]),
    "zerg": ("10gen_zerg", ["zergling", "baneling", "hydralisk"], [0.45, 0.1, 0.45], ["baneling"]),
}
_SMACV2_SIZES = ((5, 5), (10, 10), (10, 11), (20, 20), (20, 23))


def _smacv2_scenario(race: str, n_units: int, n_enemies: int) -> dict[str, Any]:
    map_name, unit_types, weights, exceptions = _SMACV2_RACES[race]
    team_gen: dict[str, Any] = {"dist_type": "weighted_teams", "unit_types": list(unit_types), "weights": list(weights)}
    if exceptions:
        team_gen["exception_unit_types"] = list(exceptions)
    team_gen["observe"] = True
    return {
        **_SMACV2_COMMON,
        "map_name": map_name,
        "capability_config": {
            "n_units": n_units,
            "n_enemies": n_enemies,
            "team_gen": team_gen,
            # The wrapper copies n_units/n_enemies into each distribution's config itself.
            "start_positions": {"dist_type": "surrounded_and_reflect", "p": 0.5, "map_x": 32, "map_y": 32},
        },
    }


# scenario name -> StarCraftCapabilityEnvWrapper keywords (copied before use: the wrapper mutates them)
SMACV2_SCENARIOS: dict[str, dict[str, Any]] = {
    f"{race}_{n}_vs_{m}": _smacv2_scenario(race, n, m) for race in _SMACV2_RACES for n, m in _SMACV2_SIZES
}
SMACV2_TASKS = tuple(SMACV2_SCENARIOS)
# The five SMACv2 scenarios of the HARL paper (its tuned_configs/smacv2).
SMACV2_PAPER_TASKS = ("protoss_5_vs_5", "terran_5_vs_5", "zerg_5_vs_5", "zerg_10_vs_10", "zerg_10_vs_11")


class SMACNotInstalledError(ImportError):
    """oxwhirl's smac/smacv2 package is missing (or PyPI's unrelated SMAC3 is installed instead)."""


class StarCraftIINotFoundError(ImportError):
    """The StarCraft II game or the SMAC maps are not where pysc2 will look for them."""


def sc2_path() -> Path:
    """Where pysc2 looks for StarCraft II: $SC2PATH, else its platform default (Linux: ~/StarCraftII)."""
    if os.environ.get("SC2PATH"):
        return Path(os.path.expanduser(os.environ["SC2PATH"]))
    if sys.platform == "darwin":
        return Path("/Applications/StarCraft II")
    if sys.platform == "win32":
        return Path("C:/Program Files (x86)/StarCraft II")
    return Path(os.path.expanduser("~/StarCraftII"))


def _install_help(smacv2: bool) -> str:
    maps = f"{SMACV2_MAPS_ZIP} (SMACv2's maps, with {SMACV2_MAP_FILE}.SC2Map)" if smacv2 else SMAC_MAPS_ZIP
    return (
        "Install StarCraft II and the maps with:  bash cluster/install_sc2.sh  (into $SC2PATH, default ~/StarCraftII)\n"
        f"or by hand: download {SC2_ZIP} and unzip it with password 'iagreetotheeula' (which accepts Blizzard's "
        "AI and Machine Learning License) into the parent of $SC2PATH, then unzip "
        f"{maps} so that the .SC2Map files are in $SC2PATH/Maps/SMAC_Maps/."
    )


def find_starcraft2(map_file: str, *, smacv2: bool = False) -> Path:
    """Check that StarCraft II and `map_file` are installed where pysc2 looks; raise how to fix it if not."""
    root = sc2_path()
    where = f"SC2PATH={os.environ['SC2PATH']!r}" if os.environ.get("SC2PATH") else "SC2PATH unset"
    if not (root / "Versions").is_dir():
        raise StarCraftIINotFoundError(
            f"StarCraft II is not installed at {root} ({where}): no Versions/ directory.\n{_install_help(smacv2)}"
        )
    map_path = root / "Maps" / "SMAC_Maps" / f"{map_file}.SC2Map"
    if not map_path.is_file():
        raise StarCraftIINotFoundError(
            f"StarCraft II is at {root} ({where}) but the map {map_path} is missing.\n{_install_help(smacv2)}"
        )
    return root


def _one_package_per_process(wanted: str) -> None:
    """oxwhirl's smac and smacv2 each register SMAC's maps with pysc2 under the same names on
    import; the second import fails deep in pysc2 (`DuplicateMapError`). Say so first."""
    other = "smacv2" if wanted == "smac" else "smac"
    if other in sys.modules and wanted not in sys.modules and hasattr(sys.modules[other], "env"):
        raise SMACNotInstalledError(
            f"`{other}` is already imported in this process, and oxwhirl's smac and smacv2 cannot both be "
            "(each registers SMAC's maps with pysc2 under the same names: DuplicateMapError). Run SMAC and "
            "SMACv2 in separate processes (separate runs, or env runners in separate Ray workers)."
        )


def _import_smac_env() -> type:
    """oxwhirl's StarCraft2Env, telling apart 'not installed' from 'SMAC3 installed under the same name'."""
    _one_package_per_process("smac")
    try:
        import smac
    except ImportError as e:
        raise SMACNotInstalledError(
            f"SMAC needs oxwhirl's `smac` package ({e}). Install it with: {SMAC_PIP}\n"
            "(Not `pip install smac`: that is SMAC3, an unrelated hyperparameter optimizer.)"
        ) from e
    try:
        from smac.env import StarCraft2Env
    except ImportError as e:
        if e.name not in (None, "smac", "smac.env"):  # oxwhirl's smac, missing one of its own dependencies
            raise SMACNotInstalledError(f"oxwhirl's smac is installed but broken ({e}). Reinstall: {SMAC_PIP}") from e
        where = getattr(smac, "__file__", None) or "an unknown location"
        raise SMACNotInstalledError(
            f"The installed `smac` package ({where}) has no `smac.env`: it is probably SMAC3, the hyperparameter "
            "optimizer that PyPI calls `smac`, not oxwhirl's StarCraft Multi-Agent Challenge. Replace it with: "
            f"pip uninstall -y smac && {SMAC_PIP}"
        ) from e
    return StarCraft2Env


def _import_smacv2_env() -> type:
    _one_package_per_process("smacv2")
    try:
        from smacv2.env import StarCraftCapabilityEnvWrapper
    except ImportError as e:
        raise SMACNotInstalledError(
            f"SMACv2 needs oxwhirl's `smacv2` package ({e}). Install it with: {SMACV2_PIP}"
        ) from e
    return StarCraftCapabilityEnvWrapper


def _resolve_cls(spec: Any) -> type:
    """A class, or a "module:Name" string naming one (a string travels to remote env runners)."""
    if not isinstance(spec, str):
        return spec
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"sc2_env_cls must be a class or a 'module:Name' string; got {spec!r}")
    return getattr(importlib.import_module(module), name)


def _seed_generators(obj: Any, seq: np.random.SeedSequence, depth: int = 0) -> None:
    """Replace every numpy Generator held by a smacv2 distribution (and the distributions it
    holds, e.g. surrounded-and-reflect's two) by one seeded from `seq`."""
    if depth > 3 or not hasattr(obj, "__dict__"):
        return
    for name, value in sorted(vars(obj).items()):
        if isinstance(value, np.random.Generator):
            setattr(obj, name, np.random.default_rng(seq.spawn(1)[0]))
        elif hasattr(value, "generate"):
            _seed_generators(value, seq.spawn(1)[0], depth + 1)


def _seed_offset(config: Any) -> int:
    """1000 · rank, HARL's seed rule (seed + rank · 1000), with a rank distinct for every env of
    every runner. RLlib hands all of a runner's envs one EnvContext and its env check resets
    every env with seed 42 before the runner's seeded reset, so neither tells them apart: the
    rank is the runner's worker index and the order in which its envs are made, counted on
    that EnvContext (a new runner, or a rebuilt set of envs, counts from 0 again)."""
    worker = int(getattr(config, "worker_index", 0) or 0)
    made = getattr(config, "_harl_smac_envs_made", 0)
    if hasattr(config, "worker_index"):  # an EnvContext (a plain dict takes no attributes)
        config._harl_smac_envs_made = made + 1
    return 1000 * (worker * 1000 + made)


class SMACTeamEnv(MultiAgentEnv):
    """One SMAC battle (oxwhirl/smac's StarCraft2Env) as a team MultiAgentEnv (harl_rllib's contract).

    env_config: ``task`` or ``map_name`` (one of SMAC_MAPS, "3m" by default), ``state_type``
    ("EP" or "FP", below), ``seed`` (the base of the game's random seed; without it, the seed of
    the first ``reset``, which under RLlib is its env check's 42: a running game cannot be
    re-seeded; every env adds its own offset, `game_seed`),
    ``obs_agent_id`` (each agent's one-hot id appended to its observation: True for SMAC and
    False for SMACv2, as HARL's envs), ``unavailable_actions`` ("replace" or "raise", see the
    module doc), ``sc2_env_cls`` (the
    class to wrap, or "module:Name"; for tests, default the real one), and any other
    StarCraft2Env keyword (``reward_sparse``, ``obs_last_action``, ``difficulty``, ...).

    State: "EP" (environment provided) is ``get_state()``, the same array for every agent.
    "FP" is agent-specific: ``get_state()`` ⊕ the agent's own observation ⊕ its one-hot id.
    HARL's FP (its bundled, MAPPO-modified StarCraft2Env, ``get_state_agent(i)``) is MAPPO's
    feature-pruned agent-specific state: every unit's features relative to agent i
    (distance, relative x/y, whether in its sight range, health, shield, unit type,
    map-centred x/y, allies' last actions), its own and move features and its one-hot id,
    zeroed once the agent is dead. It reads SC2's raw units, which oxwhirl's API does not
    expose; what it was pruned from, MAPPO's agent-specific state (env state ⊕ own obs,
    which SMAC zeroes for the dead ⊕ id), carries the same information and is used here.
    (HARL's SMAC EP is likewise its own ``get_global_state()``; here it is SMAC's public
    ``get_state()``, which HARL's SMACv2 env uses too.)
    """

    default_task = "3m"
    known_tasks: tuple[str, ...] = SMAC_MAPS
    kind = "SMAC map"
    smacv2 = False
    # HARL's StarCraft2Env appends each agent's one-hot id to its observation by default
    # (`obs_agent_id=True`); its SMACv2 env, on oxwhirl's smacv2, does not.
    default_obs_agent_id = True

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._seed_offset = _seed_offset(config)
        config = dict(config or {})
        task = config.pop("task", None)
        map_name = config.pop("map_name", None)
        self.task = task or map_name or self.default_task
        self.state_type = config.pop("state_type", "EP")
        self.obs_agent_id = bool(config.pop("obs_agent_id", self.default_obs_agent_id))
        self._seed = config.pop("seed", None)
        spec = config.pop("sc2_env_cls", None)
        self.unavailable_actions = config.pop("unavailable_actions", "replace")
        if config.pop("continuous_actions", False):
            raise ValueError("SMAC's actions are discrete; continuous_actions must be False")
        if self.task not in self.known_tasks:
            raise ValueError(f"Unknown {self.kind} {self.task!r}; known: {', '.join(self.known_tasks)}")
        if self.state_type not in ("EP", "FP"):
            raise ValueError(f"state_type must be 'EP' or 'FP'; got {self.state_type!r}")
        if self.unavailable_actions not in ("replace", "raise"):
            raise ValueError(f"unavailable_actions must be 'replace' or 'raise'; got {self.unavailable_actions!r}")
        self._kwargs = self._env_kwargs(self.task, config)
        self._cls = _resolve_cls(spec) if spec is not None else self._import_default()
        if spec is None or self._cls.__module__.split(".")[0] in ("smac", "smacv2"):
            find_starcraft2(self._map_file(), smacv2=self.smacv2)
        self.env = self._make_env()
        self._launched = False  # StarCraft2Env starts the game at its first reset
        self._timeouts = 0
        self._masks: np.ndarray | None = None
        self._steps = 0
        self.replaced_actions = 0
        self._warned = False

        self.env_info = self.env.get_env_info()
        n, n_actions = int(self.env_info["n_agents"]), int(self.env_info["n_actions"])
        obs_dim, env_state_dim = int(self.env_info["obs_shape"]), int(self.env_info["state_shape"])
        self.n_agents = n
        self.spaces = MaskedTeamSpaces(n, obs_dim, n_actions, env_state_dim, self.state_type, self.obs_agent_id)
        self.spaces.apply(self)

    # ---- what differs between SMAC and SMACv2 ----
    def _env_kwargs(self, task: str, passthrough: dict[str, Any]) -> dict[str, Any]:
        return {"map_name": task, **passthrough}

    def _import_default(self) -> type:
        return _import_smac_env()

    def _map_file(self) -> str:
        return self.task

    def _make_env(self):
        kwargs = copy.deepcopy(self._kwargs)
        if self._seed is not None:
            kwargs["seed"] = self._seed + self._seed_offset
        return self._cls(**kwargs)

    @property
    def game_seed(self) -> int | None:
        """The SC2 game's random seed: the run's seed plus this env's offset (HARL's rule)."""
        return None if self._seed is None else self._seed + self._seed_offset

    # ---- conversion to RLlib's dicts ----
    def _observe(self) -> tuple[dict, dict, np.ndarray]:
        obs = [np.asarray(o, np.float32) for o in self.env.get_obs()]
        masks = np.asarray(self.env.get_avail_actions(), np.float32)
        env_state = np.asarray(self.env.get_state(), np.float32)
        dead = np.asarray(getattr(self.env, "death_tracker_ally", np.zeros(self.n_agents)), bool)
        alive = ~(dead | (masks[:, NO_OP] == 1))  # no-op is available to dead units only
        self._masks = masks
        obs_dict, infos = {}, {}
        for i, a in enumerate(self.possible_agents):
            obs_dict[a] = {"obs": self.spaces.obs(obs[i], i), "action_mask": masks[i]}
            state = self.spaces.state(env_state, obs[i], i)
            infos[a] = {STATE_KEY: state, ALIVE_KEY: bool(alive[i])}
        return obs_dict, infos, alive

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """A new battle. `seed` only counts before the game runs (and without env_config's seed).

        StarCraft2Env launches the game at every reset while no battle has ended yet
        (`_episode_count == 0`), and each such reset adds the enemies' health and shields to
        `max_reward` again, which shrinks every later reward. RLlib resets each env twice before
        the first battle ends (its env check, then the runner), so from the second reset on the
        env is told a battle has been played: it restarts the battle in the running game."""
        if not self._launched:
            if seed is not None and self._seed is None:  # no game is running yet: seeding is free
                self.env.close()
                self._seed = seed
                self.env = self._make_env()
            self._launched = True
        else:
            sc2 = getattr(self.env, "env", self.env)  # SMACv2's wrapper holds the StarCraft2Env
            if getattr(sc2, "_episode_count", None) == 0:
                sc2._episode_count = 1
        self.env.reset()
        self._timeouts = getattr(self.env, "timeouts", 0)
        self.agents = list(self.possible_agents)
        obs, infos, _ = self._observe()
        return obs, infos

    def step(self, action_dict: dict[str, Any]):
        missing = [a for a in self.possible_agents if a not in action_dict]
        if missing:
            raise ValueError(f"No action for {missing}: SMAC steps every agent every step (the dead with no-op 0)")
        actions, replaced = self._checked_actions(action_dict)
        reward, done, info = self.env.step(actions)
        self._steps += 1
        info = info or {}
        timeouts = getattr(self.env, "timeouts", None)
        timed_out = bool(info.get("episode_limit", False)) or (timeouts is not None and timeouts > self._timeouts)
        if timeouts is not None:
            self._timeouts = timeouts
        # SMAC answers a lost connection to the game with (0, True, {}) after restarting it:
        # not a real end of the battle either.
        truncated = bool(done) and (timed_out or not info)
        terminated = bool(done) and not truncated
        obs, infos, alive = self._observe()
        if done:
            dead_enemies = np.sum(getattr(self.env, "death_tracker_enemy", 0))
            stats = {
                "battle_won": float(bool(info.get("battle_won", False))),
                "dead_allies": float(info.get("dead_allies", self.n_agents - alive.sum())),
                "dead_enemies": float(info.get("dead_enemies", dead_enemies)),
            }
            for agent_info in infos.values():
                agent_info[EPISODE_STATS_KEY] = stats
            self.agents = []
        for i in replaced:
            infos[self.possible_agents[i]][REPLACED_KEY] = True
        team = float(reward)
        return (
            obs,
            {a: team for a in self.possible_agents},
            {a: terminated for a in self.possible_agents} | {"__all__": terminated},
            {a: truncated for a in self.possible_agents} | {"__all__": truncated},
            infos,
        )

    def _checked_actions(self, action_dict: dict[str, Any]) -> tuple[list[int], list[int]]:
        """The actions as SMAC takes them, unavailable ones replaced (or raised on); and who was replaced."""
        actions = [int(action_dict[a]) for a in self.possible_agents]
        if self._masks is None:
            return actions, []
        replaced = [i for i, action in enumerate(actions) if not self._masks[i, action]]
        for i in replaced:
            mask = self._masks[i]
            if self.unavailable_actions == "raise":
                raise ValueError(
                    f"{self.possible_agents[i]} took unavailable action {actions[i]}; "
                    f"available: {np.flatnonzero(mask).tolist()}"
                )
            if self._steps > 0 and not self._warned:  # the first step may be RLlib's env check
                self._warned = True
                logger.warning(
                    "%s took unavailable action %d (available: %s); replaced, as are later ones "
                    "(counted in replaced_actions, flagged in info[%r]).",
                    self.possible_agents[i],
                    actions[i],
                    np.flatnonzero(mask).tolist(),
                    REPLACED_KEY,
                )
            actions[i] = NO_OP if mask[NO_OP] else STOP
            self.replaced_actions += 1
        return actions, replaced

    def close(self) -> None:
        self.env.close()


class SMACv2TeamEnv(SMACTeamEnv):
    """One SMACv2 battle (oxwhirl/smacv2's StarCraftCapabilityEnvWrapper) as a team MultiAgentEnv.

    env_config as `SMACTeamEnv`, with ``task``/``map_name`` one of SMACV2_TASKS (HARL's
    scenario configs: race × team sizes, e.g. "zerg_10_vs_11"; "protoss_5_vs_5" by default).
    Other keys override the scenario's keywords (e.g. a whole ``capability_config``).
    Unlike HARL's SMACv2 env, which gives no per-agent dones (so no alive masks), dead
    agents are marked ``alive=False`` here, as for SMAC.
    """

    default_task = "protoss_5_vs_5"
    known_tasks = SMACV2_TASKS
    kind = "SMACv2 scenario"
    smacv2 = True
    default_obs_agent_id = False

    def _env_kwargs(self, task: str, passthrough: dict[str, Any]) -> dict[str, Any]:
        return {**copy.deepcopy(SMACV2_SCENARIOS[task]), **passthrough}

    def _import_default(self) -> type:
        return _import_smacv2_env()

    def _map_file(self) -> str:
        return SMACV2_MAP_FILE

    def _make_env(self):
        """The wrapper, with its team and start-position draws seeded from the game seed: smacv2's
        distributions each draw from an unseeded `np.random.default_rng()` and shuffle the unit
        order with Python's global `random`, so without this no two runs see the same battles."""
        env = super()._make_env()
        seed = self.game_seed
        if seed is not None:
            random.seed(seed)  # the unit-order shuffles (HARL seeds `random` at start, too)
            for k, distribution in enumerate(getattr(env, "env_key_to_distribution_map", {}).values()):
                _seed_generators(distribution, np.random.SeedSequence([seed, k]))
        return env
