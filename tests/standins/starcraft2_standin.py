"""Stand-ins for SMAC's `StarCraft2Env` and SMACv2's `StarCraftCapabilityEnvWrapper`.

StarCraft II (a multi-GB game binary) cannot be installed on every machine, so the SMAC
adapters in harl_rllib/envs/smac.py are tested against these stand-ins. They copy the
public API of oxwhirl/smac's and oxwhirl/smacv2's classes, which is what the adapters
rely on:

* constructor keywords (an unknown one raises TypeError; an unknown map raises KeyError),
* method names and return values: ``reset() -> (obs, state)``,
  ``step(actions) -> (reward, terminated, info)``, ``get_obs()``, ``get_obs_agent(i)``,
  ``get_state()``, ``get_avail_actions()``, ``get_avail_agent_actions(i)`` (lists of
  0/1 ints), ``get_env_info()`` (shapes that match what the getters return), ``close()``,
* available actions: 0 no-op (dead units only, and then the only one), 1 stop, 2-5 move
  north/south/east/west (when that stays on the map), 6+e attack enemy e (alive and
  within shooting range),
* death: health reaches 0, the observation becomes all zeros, and a non-no-op action for
  a dead unit (or any unavailable action) fails the same assert as the real env,
* reward (damage and kills dealt, win bonus, scaled by ``max_reward / reward_scale_rate``),
  info keys (``battle_won``, ``dead_allies``, ``dead_enemies``; ``episode_limit`` only
  with ``continuing_episode=True``, as in the real env) and counters
  (``death_tracker_ally``, ``timeouts``, ``battles_won``, ...), including the real env's
  quirk that ``reward_sparse=True`` never updates the death trackers.

* medivacs (SMAC's MMM maps, SMACv2's terran maps): a medivac's target actions 6+t name
  *allies* t (alive, in range, not medivacs, itself included), and heal instead of attack;
  a battle is lost once only medivacs are left of our team, and (SMAC's rule, not smacv2's)
  won once the only enemy left is a medivac.

The battle is a toy, not StarCraft: units on a 32x32 plane, attacks deal a fixed damage
and heals a fixed amount per step, and every enemy walks to the nearest ally and, once in
range, shoots a random ally in range with probability 0.35 (an enemy medivac heals a
random damaged enemy in range instead). All
randomness comes from ``seed``. Not modelled (NotImplementedError): ``heuristic_ai``,
``conic_fov``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

# map name -> (n_agents, n_enemies, episode limit, ally race, enemy race, unit_type_bits):
# the published SMAC/SMACv2 map parameters (for SMACv2's 10gen maps, the team sizes come
# from capability_config).
MAP_PARAMS: dict[str, tuple[int, int, int, str, str, int]] = {
    "3m": (3, 3, 60, "T", "T", 0),
    "8m": (8, 8, 120, "T", "T", 0),
    "25m": (25, 25, 150, "T", "T", 0),
    "5m_vs_6m": (5, 6, 70, "T", "T", 0),
    "8m_vs_9m": (8, 9, 120, "T", "T", 0),
    "10m_vs_11m": (10, 11, 150, "T", "T", 0),
    "27m_vs_30m": (27, 30, 180, "T", "T", 0),
    "MMM": (10, 10, 150, "T", "T", 3),
    "MMM2": (10, 12, 180, "T", "T", 3),
    "2s3z": (5, 5, 120, "P", "P", 2),
    "3s5z": (8, 8, 150, "P", "P", 2),
    "3s5z_vs_3s6z": (8, 9, 170, "P", "P", 2),
    "3s_vs_3z": (3, 3, 150, "P", "P", 0),
    "3s_vs_4z": (3, 4, 200, "P", "P", 0),
    "3s_vs_5z": (3, 5, 250, "P", "P", 0),
    "1c3s5z": (9, 9, 180, "P", "P", 3),
    "2m_vs_1z": (2, 1, 150, "T", "P", 0),
    "corridor": (6, 24, 400, "P", "Z", 0),
    "6h_vs_8z": (6, 8, 150, "Z", "P", 0),
    "2s_vs_1sc": (2, 1, 300, "P", "Z", 0),
    "so_many_baneling": (7, 32, 100, "P", "Z", 0),
    "bane_vs_bane": (24, 24, 200, "Z", "Z", 2),
    "2c_vs_64zg": (2, 64, 400, "P", "Z", 0),
    "10gen_terran": (10, 10, 200, "T", "T", 3),
    "10gen_protoss": (10, 10, 200, "P", "P", 3),
    "10gen_zerg": (10, 10, 200, "Z", "Z", 3),
}

# unit -> (health, shield, damage per agent step): made-up numbers of the right order.
UNIT_STATS: dict[str, tuple[float, float, float]] = {
    "marine": (45, 0, 6),
    "marauder": (125, 0, 10),
    "medivac": (150, 0, 0),
    "stalker": (80, 80, 13),
    "zealot": (100, 50, 16),
    "colossus": (200, 150, 20),
    "zergling": (35, 0, 5),
    "hydralisk": (90, 0, 12),
    "baneling": (30, 0, 16),
}
RACE_UNITS = {
    "T": ("marine", "marauder", "medivac"),
    "P": ("stalker", "zealot", "colossus"),
    "Z": ("zergling", "hydralisk", "baneling"),
}

MAP_SIZE = 32.0
SHOOT_RANGE = 6.0  # SMAC's unit_shoot_range / unit_sight_range
SIGHT_RANGE = 9.0
N_ACTIONS_NO_ATTACK = 6
N_ACTIONS_MOVE = 4
ENEMY_STEP = 1.0
MEDIVAC_HEAL = 9.0  # health a medivac restores per agent step (made up, the right order)
ENEMY_HIT_PROB = 0.35  # random play (almost) always loses, focused fire usually wins, as in SMAC

# StarCraft2Env's keyword arguments in oxwhirl/smac, and those smacv2 adds.
SMAC_KWARGS = frozenset(
    "map_name step_mul move_amount difficulty game_version seed continuing_episode obs_all_health "
    "obs_own_health obs_last_action obs_pathing_grid obs_terrain_height obs_instead_of_state "
    "obs_timestep_number state_last_action state_timestep_number reward_sparse reward_only_positive "
    "reward_death_value reward_win reward_defeat reward_negative_scale reward_scale reward_scale_rate "
    "replay_dir replay_prefix window_size_x window_size_y heuristic_ai heuristic_rest debug".split()
)
SMACV2_KWARGS = SMAC_KWARGS | frozenset(
    "obs_own_pos obs_starcraft conic_fov num_fov_actions use_unit_ranges min_attack_range "
    "kill_unit_step_mul fully_observable capability_config prob_obs_enemy action_mask".split()
)
DEFAULTS: dict[str, Any] = {
    "move_amount": 2,
    "seed": None,
    "continuing_episode": False,
    "obs_all_health": True,
    "obs_own_health": True,
    "obs_last_action": False,
    "obs_pathing_grid": False,
    "obs_terrain_height": False,
    "obs_instead_of_state": False,
    "obs_timestep_number": False,
    "state_last_action": True,
    "state_timestep_number": False,
    "reward_sparse": False,
    "reward_only_positive": True,
    "reward_death_value": 10,
    "reward_win": 200,
    "reward_defeat": 0,
    "reward_negative_scale": 0.5,
    "reward_scale": True,
    "reward_scale_rate": 20,
    "heuristic_ai": False,
    "obs_own_pos": False,
    "conic_fov": False,
    "capability_config": {},
}


@dataclass
class Point:
    x: float
    y: float


@dataclass
class Unit:
    """The fields of SC2's raw unit that SMAC reads (health, shield, position, type)."""

    unit_type: str
    type_id: int
    health: float
    health_max: float
    shield: float
    shield_max: float
    damage: float
    pos: Point


def _make_unit(name: str, type_id: int, x: float, y: float) -> Unit:
    health, shield, damage = UNIT_STATS[name]
    return Unit(name, type_id, health, health, shield, shield, damage, Point(float(x), float(y)))


def _hit(unit: Unit, damage: float) -> None:
    """Shields absorb damage first, as in StarCraft II."""
    absorbed = min(unit.shield, damage)
    unit.shield -= absorbed
    unit.health = max(0.0, unit.health - (damage - absorbed))


class StarCraft2EnvStandIn:
    """Stand-in for ``smac.env.StarCraft2Env``: its public API over a toy battle (see module doc)."""

    _kwargs: ClassVar[frozenset[str]] = SMAC_KWARGS
    # Shared by all instances so a test can see what an RLlib run did to the envs it built.
    unavailable_actions_taken: ClassVar[int] = 0
    steps_taken: ClassVar[int] = 0

    def __init__(self, map_name: str = "8m", **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - self._kwargs)
        if unknown:
            raise TypeError(f"__init__() got an unexpected keyword argument {unknown[0]!r}")
        opts = {**DEFAULTS, **kwargs}
        if opts["heuristic_ai"] or opts["conic_fov"]:
            raise NotImplementedError("the StarCraft II stand-in does not model heuristic_ai or conic_fov")
        n_agents, n_enemies, self.episode_limit, self._agent_race, self._bot_race, bits = MAP_PARAMS[map_name]
        self.map_name = map_name
        # SMAC's `map_type == "MMM"` (MMM, MMM2) and smacv2's "terran_gen": medivacs heal.
        self._medivacs_heal = map_name.startswith("MMM") or map_name == "10gen_terran"
        self.capability_config = opts["capability_config"]
        if "team_gen" in self.capability_config:  # SMACv2: team sizes from the capability config
            n_agents = self.capability_config["team_gen"]["n_units"]
            n_enemies = self.capability_config["team_gen"]["n_enemies"]
            self._unit_names = tuple(self.capability_config["team_gen"]["unit_types"])
        else:
            self._unit_names = RACE_UNITS[self._agent_race][: max(bits, 1)]
        self.n_agents, self.n_enemies, self.unit_type_bits = n_agents, n_enemies, bits
        self._seed = opts["seed"]
        self._rng = np.random.default_rng(self._seed)
        self._move_amount = float(opts["move_amount"])
        self.continuing_episode = opts["continuing_episode"]
        self.obs_all_health = opts["obs_all_health"]
        self.obs_own_health = opts["obs_own_health"] or opts["obs_all_health"]
        self.obs_last_action = opts["obs_last_action"]
        self.obs_pathing_grid = opts["obs_pathing_grid"]
        self.obs_terrain_height = opts["obs_terrain_height"]
        self.obs_instead_of_state = opts["obs_instead_of_state"]
        self.obs_timestep_number = opts["obs_timestep_number"]
        self.obs_own_pos = opts["obs_own_pos"]
        self.state_last_action = opts["state_last_action"]
        self.state_timestep_number = opts["state_timestep_number"]
        self.reward_sparse = opts["reward_sparse"]
        self.reward_only_positive = opts["reward_only_positive"]
        self.reward_death_value = opts["reward_death_value"]
        self.reward_win = opts["reward_win"]
        self.reward_defeat = opts["reward_defeat"]
        self.reward_negative_scale = opts["reward_negative_scale"]
        self.reward_scale = opts["reward_scale"]
        self.reward_scale_rate = opts["reward_scale_rate"]
        self.n_actions = N_ACTIONS_NO_ATTACK + n_enemies
        self.shield_bits_ally = int(self._agent_race == "P")
        self.shield_bits_enemy = int(self._bot_race == "P")
        self.max_reward = n_enemies * self.reward_death_value + self.reward_win
        self.agents: dict[int, Unit] = {}
        self.enemies: dict[int, Unit] = {}
        self._episode_count = self._episode_steps = self._total_steps = 0
        self.battles_won = self.battles_game = self.timeouts = self.force_restarts = 0
        self.death_tracker_ally = np.zeros(n_agents)
        self.death_tracker_enemy = np.zeros(n_enemies)
        self.previous_ally_units: dict[int, Unit] | None = None
        self.previous_enemy_units: dict[int, Unit] | None = None
        self.last_action = np.zeros((n_agents, self.n_actions))
        self.win_counted = self.defeat_counted = False
        self.launched = False  # the real env launches the game at the first reset
        self.launches = 0  # ... and at every reset while no battle has ended (`_episode_count == 0`)
        self.closed = False

    # ---- episode ----
    def reset(self) -> tuple[list[np.ndarray], np.ndarray]:
        """Returns initial observations and state, like the real env (which launches SC2 here first)."""
        return self._reset({})

    def _reset(self, episode_config: dict) -> tuple[list[np.ndarray], np.ndarray]:
        self._episode_steps = 0
        self.launched = True
        self.death_tracker_ally = np.zeros(self.n_agents)
        self.death_tracker_enemy = np.zeros(self.n_enemies)
        self.previous_ally_units = self.previous_enemy_units = None
        self.win_counted = self.defeat_counted = False
        self.last_action = np.zeros((self.n_agents, self.n_actions))
        self._init_units(episode_config)
        if self._episode_count == 0:  # the real env `_launch()`es a game here, and counts max_reward again
            self.launches += 1
            self.max_reward += sum(u.health_max + u.shield_max for u in self.enemies.values())
        return self.get_obs(), self.get_state()

    def _init_units(self, episode_config: dict) -> None:
        rng = self._rng
        if "team_gen" in episode_config:
            allies = list(episode_config["team_gen"]["ally_team"])
            enemies = list(episode_config["team_gen"]["enemy_team"])
        else:
            allies = [self._unit_names[i % len(self._unit_names)] for i in range(self.n_agents)]
            enemy_names = RACE_UNITS[self._bot_race][: len(self._unit_names)]
            enemies = [enemy_names[i % len(enemy_names)] for i in range(self.n_enemies)]
        if "ally_start_positions" in episode_config:
            ally_pos = np.asarray(episode_config["ally_start_positions"]["item"], float)
            enemy_pos = np.asarray(episode_config["enemy_start_positions"]["item"], float)
        else:
            spread = min(0.8, 20.0 / max(self.n_agents, self.n_enemies))
            ally_pos = np.stack(
                [12 + rng.uniform(-1, 1, self.n_agents), 16 + spread * (np.arange(self.n_agents) - self.n_agents / 2)],
                1,
            )
            enemy_pos = np.stack(
                [
                    20 + rng.uniform(-1, 1, self.n_enemies),
                    16 + spread * (np.arange(self.n_enemies) - self.n_enemies / 2),
                ],
                1,
            )
        names = list(self._unit_names)
        self.agents = {i: _make_unit(n, names.index(n), *ally_pos[i]) for i, n in enumerate(allies)}
        enemy_ids = {n: i for i, n in enumerate(RACE_UNITS[self._bot_race])} | {n: i for i, n in enumerate(names)}
        self.enemies = {i: _make_unit(n, enemy_ids[n], *enemy_pos[i]) for i, n in enumerate(enemies)}

    def step(self, actions) -> tuple[float, bool, dict]:
        """A single environment step. Returns reward, terminated, info (as the real env)."""
        actions_int = [int(a) for a in actions]
        self.last_action = np.eye(self.n_actions)[np.array(actions_int)]
        for a_id, action in enumerate(actions_int):
            if self.get_avail_agent_actions(a_id)[action] != 1:
                StarCraft2EnvStandIn.unavailable_actions_taken += 1
            assert self.get_avail_agent_actions(a_id)[action] == 1, f"Agent {a_id} cannot perform action {action}"
        StarCraft2EnvStandIn.steps_taken += 1
        self.previous_ally_units = {i: _copy(u) for i, u in self.agents.items()}
        self.previous_enemy_units = {i: _copy(u) for i, u in self.enemies.items()}
        self._apply_actions(actions_int)
        self._enemies_act()
        self._total_steps += 1
        self._episode_steps += 1
        game_end_code = self._game_end_code()

        terminated = False
        reward = self.reward_battle()
        info: dict[str, Any] = {"battle_won": False}
        info["dead_allies"] = sum(u.health == 0 for u in self.agents.values())
        info["dead_enemies"] = sum(u.health == 0 for u in self.enemies.values())
        if game_end_code is not None:
            terminated = True
            self.battles_game += 1
            if game_end_code == 1 and not self.win_counted:
                self.battles_won += 1
                self.win_counted = True
                info["battle_won"] = True
                reward = reward + self.reward_win if not self.reward_sparse else 1
            elif game_end_code == -1 and not self.defeat_counted:
                self.defeat_counted = True
                reward = reward + self.reward_defeat if not self.reward_sparse else -1
        elif self._episode_steps >= self.episode_limit:
            terminated = True
            if self.continuing_episode:
                info["episode_limit"] = True
            self.battles_game += 1
            self.timeouts += 1
        if terminated:
            self._episode_count += 1
        if self.reward_scale:
            reward /= self.max_reward / self.reward_scale_rate
        self.reward = reward
        return reward, terminated, info

    def _heals(self, unit: Unit) -> bool:
        return self._medivacs_heal and unit.unit_type == "medivac"

    def _apply_actions(self, actions: list[int]) -> None:
        dirs = {2: (0.0, 1.0), 3: (0.0, -1.0), 4: (1.0, 0.0), 5: (-1.0, 0.0)}
        for a_id, action in enumerate(actions):
            unit = self.agents[a_id]
            if action in dirs:
                dx, dy = dirs[action]
                unit.pos = Point(unit.pos.x + dx * self._move_amount, unit.pos.y + dy * self._move_amount)
            elif action >= N_ACTIONS_NO_ATTACK and self._heals(unit):
                _heal(self.agents[action - N_ACTIONS_NO_ATTACK])
            elif action >= N_ACTIONS_NO_ATTACK:
                _hit(self.enemies[action - N_ACTIONS_NO_ATTACK], unit.damage)

    def _enemies_act(self) -> None:
        for enemy in self.enemies.values():
            alive = [u for u in self.agents.values() if u.health > 0]
            if enemy.health == 0 or not alive:
                continue
            if self._heals(enemy):
                hurt = [
                    u
                    for u in self.enemies.values()
                    if 0 < u.health < u.health_max and not self._heals(u) and _dist(enemy, u) <= SHOOT_RANGE
                ]
                if hurt:
                    _heal(hurt[self._rng.integers(len(hurt))])
                continue
            dists = [_dist(enemy, u) for u in alive]
            in_range = [u for u, d in zip(alive, dists, strict=True) if d <= SHOOT_RANGE]
            if in_range:
                if self._rng.random() < ENEMY_HIT_PROB:
                    _hit(in_range[self._rng.integers(len(in_range))], enemy.damage)
            else:
                target = alive[int(np.argmin(dists))]
                d = min(dists)
                enemy.pos = Point(
                    enemy.pos.x + ENEMY_STEP * (target.pos.x - enemy.pos.x) / d,
                    enemy.pos.y + ENEMY_STEP * (target.pos.y - enemy.pos.y) / d,
                )

    def _game_end_code(self) -> int | None:
        n_ally_alive = sum(u.health > 0 for u in self.agents.values())
        n_enemy_alive = sum(u.health > 0 for u in self.enemies.values())
        if (n_ally_alive == 0 and n_enemy_alive > 0) or self.only_medivac_left(ally=True):
            return -1
        if (n_ally_alive > 0 and n_enemy_alive == 0) or self.only_medivac_left(ally=False):
            return 1
        if n_ally_alive == 0 and n_enemy_alive == 0:
            return 0
        return None

    def only_medivac_left(self, ally: bool) -> bool:
        """Ours: no unit but medivacs alive. The enemy's (SMAC): one unit alive, a medivac."""
        if not self._medivacs_heal:
            return False
        if ally:
            return not any(u.health > 0 and u.unit_type != "medivac" for u in self.agents.values())
        alive = [u for u in self.enemies.values() if u.health > 0]
        return len(alive) == 1 and alive[0].unit_type == "medivac"

    def reward_battle(self) -> float:
        """Damage and kills dealt (minus, unless only positive, damage and deaths taken), as SMAC."""
        if self.reward_sparse:
            return 0
        neg = self.reward_negative_scale
        delta_deaths = delta_ally = delta_enemy = 0.0
        for al_id, unit in self.agents.items():
            if not self.death_tracker_ally[al_id]:
                prev = self.previous_ally_units[al_id]
                prev_health = prev.health + prev.shield
                if unit.health == 0:
                    self.death_tracker_ally[al_id] = 1
                    if not self.reward_only_positive:
                        delta_deaths -= self.reward_death_value * neg
                    delta_ally += prev_health * neg
                else:
                    delta_ally += neg * (prev_health - unit.health - unit.shield)
        for e_id, unit in self.enemies.items():
            if not self.death_tracker_enemy[e_id]:
                prev = self.previous_enemy_units[e_id]
                prev_health = prev.health + prev.shield
                if unit.health == 0:
                    self.death_tracker_enemy[e_id] = 1
                    delta_deaths += self.reward_death_value
                    delta_enemy += prev_health
                else:
                    delta_enemy += prev_health - unit.health - unit.shield
        if self.reward_only_positive:
            return abs(delta_enemy + delta_deaths)
        return delta_enemy + delta_deaths - delta_ally

    # ---- actions ----
    def can_move(self, unit: Unit, action: int) -> bool:
        dx, dy = {2: (0, 1), 3: (0, -1), 4: (1, 0), 5: (-1, 0)}[action]
        x, y = unit.pos.x + dx * self._move_amount, unit.pos.y + dy * self._move_amount
        return 0 <= x < MAP_SIZE and 0 <= y < MAP_SIZE

    def unit_shoot_range(self, agent_id: int) -> float:
        return SHOOT_RANGE

    def unit_sight_range(self, agent_id: int) -> float:
        return SIGHT_RANGE

    def get_avail_agent_actions(self, agent_id: int) -> list[int]:
        """Returns the available actions for agent_id."""
        unit = self.get_unit_by_id(agent_id)
        if unit.health > 0:
            avail = [0] * self.n_actions
            avail[1] = 1
            for action in range(2, 2 + N_ACTIONS_MOVE):
                avail[action] = int(self.can_move(unit, action))
            targets = self.enemies.items()
            if self._heals(unit):  # medivacs heal allies that are not medivacs (not themselves)
                targets = [(t_id, t) for t_id, t in self.agents.items() if t.unit_type != "medivac"]
            for t_id, target in targets:
                if target.health > 0 and _dist(unit, target) <= self.unit_shoot_range(agent_id):
                    avail[t_id + N_ACTIONS_NO_ATTACK] = 1
            return avail
        return [1] + [0] * (self.n_actions - 1)

    def get_avail_actions(self) -> list[list[int]]:
        return [self.get_avail_agent_actions(i) for i in range(self.n_agents)]

    def get_total_actions(self) -> int:
        return self.n_actions

    def get_unit_by_id(self, a_id: int) -> Unit:
        return self.agents[a_id]

    # ---- observations and state ----
    def get_obs_move_feats_size(self) -> int:
        return N_ACTIONS_MOVE + 8 * self.obs_pathing_grid + 9 * self.obs_terrain_height

    def get_obs_enemy_feats_size(self) -> tuple[int, int]:
        nf = 4 + self.unit_type_bits + (1 + self.shield_bits_enemy if self.obs_all_health else 0)
        return self.n_enemies, nf

    def get_obs_ally_feats_size(self) -> tuple[int, int]:
        nf = 4 + self.unit_type_bits + (1 + self.shield_bits_ally if self.obs_all_health else 0)
        nf += self.n_actions if self.obs_last_action else 0
        return self.n_agents - 1, nf

    def get_obs_own_feats_size(self) -> int:
        own = self.unit_type_bits + (1 + self.shield_bits_ally if self.obs_own_health else 0)
        own += 2 * self.obs_own_pos
        return own + int(self.obs_timestep_number)

    def get_obs_size(self) -> int:
        n_en, nf_en = self.get_obs_enemy_feats_size()
        n_al, nf_al = self.get_obs_ally_feats_size()
        return self.get_obs_move_feats_size() + n_en * nf_en + n_al * nf_al + self.get_obs_own_feats_size()

    def _state_feats(self) -> tuple[int, int]:
        return 4 + self.shield_bits_ally + self.unit_type_bits, 3 + self.shield_bits_enemy + self.unit_type_bits

    def get_state_size(self) -> int:
        if self.obs_instead_of_state:
            return self.get_obs_size() * self.n_agents
        nf_al, nf_en = self._state_feats()
        size = self.n_agents * nf_al + self.n_enemies * nf_en
        size += self.n_agents * self.n_actions if self.state_last_action else 0
        return size + int(self.state_timestep_number)

    def get_obs_agent(self, agent_id: int) -> np.ndarray:
        """The agent's local view; all zeros once it is dead (but the timestep, if observed)."""
        unit = self.get_unit_by_id(agent_id)
        move = np.zeros(self.get_obs_move_feats_size(), np.float32)
        enemy = np.zeros(self.get_obs_enemy_feats_size(), np.float32)
        ally = np.zeros(self.get_obs_ally_feats_size(), np.float32)
        own = np.zeros(self.get_obs_own_feats_size() - int(self.obs_timestep_number), np.float32)
        if unit.health > 0:
            avail = self.get_avail_agent_actions(agent_id)
            move[:N_ACTIONS_MOVE] = avail[2 : 2 + N_ACTIONS_MOVE]
            if self.obs_pathing_grid:
                move[N_ACTIONS_MOVE : N_ACTIONS_MOVE + 8] = 1.0
            for e_id, e in self.enemies.items():
                dist = _dist(unit, e)
                if dist < SIGHT_RANGE and e.health > 0:
                    enemy[e_id, :4] = (avail[N_ACTIONS_NO_ATTACK + e_id], dist / SIGHT_RANGE, *_rel(unit, e))
                    self._fill_unit(enemy[e_id], 4, e, self.obs_all_health, self.shield_bits_enemy)
            others = [i for i in range(self.n_agents) if i != agent_id]
            for row, al_id in enumerate(others):
                al = self.agents[al_id]
                dist = _dist(unit, al)
                if dist < SIGHT_RANGE and al.health > 0:
                    ally[row, :4] = (1.0, dist / SIGHT_RANGE, *_rel(unit, al))
                    ind = self._fill_unit(ally[row], 4, al, self.obs_all_health, self.shield_bits_ally)
                    if self.obs_last_action:
                        ally[row, ind:] = self.last_action[al_id]
            ind = self._fill_unit(own, 0, unit, self.obs_own_health, self.shield_bits_ally)
            if self.obs_own_pos:
                own[ind : ind + 2] = (unit.pos.x / MAP_SIZE, unit.pos.y / MAP_SIZE)
        obs = np.concatenate([move, enemy.ravel(), ally.ravel(), own])
        if self.obs_timestep_number:
            obs = np.append(obs, np.float32(self._episode_steps / self.episode_limit))
        return obs

    def _fill_unit(self, row: np.ndarray, ind: int, u: Unit, health: bool, shield_bits: int) -> int:
        """Health (and shield) fractions, then the unit-type one-hot; returns the next index."""
        if health:
            row[ind] = u.health / u.health_max
            ind += 1
            if shield_bits:
                row[ind] = u.shield / u.shield_max if u.shield_max else 0.0
                ind += 1
        if self.unit_type_bits:
            row[ind + u.type_id] = 1.0
            ind += self.unit_type_bits
        return ind

    def get_obs(self) -> list[np.ndarray]:
        return [self.get_obs_agent(i) for i in range(self.n_agents)]

    def get_state(self) -> np.ndarray:
        """The global state (allies, enemies, last actions), float32, as the real env."""
        if self.obs_instead_of_state:
            return np.concatenate(self.get_obs(), axis=0).astype(np.float32)
        nf_al, nf_en = self._state_feats()
        allies = np.zeros((self.n_agents, nf_al), np.float32)
        enemies = np.zeros((self.n_enemies, nf_en), np.float32)
        centre = MAP_SIZE / 2
        for i, u in self.agents.items():
            if u.health > 0:
                allies[i, :4] = (
                    u.health / u.health_max,
                    0.0,
                    (u.pos.x - centre) / MAP_SIZE,
                    (u.pos.y - centre) / MAP_SIZE,
                )
                if self.shield_bits_ally:
                    allies[i, 4] = u.shield / u.shield_max if u.shield_max else 0.0
                if self.unit_type_bits:
                    allies[i, 4 + self.shield_bits_ally + u.type_id] = 1.0
        for i, u in self.enemies.items():
            if u.health > 0:
                enemies[i, :3] = (u.health / u.health_max, (u.pos.x - centre) / MAP_SIZE, (u.pos.y - centre) / MAP_SIZE)
                if self.shield_bits_enemy:
                    enemies[i, 3] = u.shield / u.shield_max if u.shield_max else 0.0
                if self.unit_type_bits:
                    enemies[i, 3 + self.shield_bits_enemy + u.type_id] = 1.0
        state = np.append(allies.ravel(), enemies.ravel())
        if self.state_last_action:
            state = np.append(state, self.last_action.ravel())
        if self.state_timestep_number:
            state = np.append(state, self._episode_steps / self.episode_limit)
        return state.astype(np.float32)

    # ---- misc. API ----
    def get_env_info(self) -> dict[str, Any]:
        return {
            "state_shape": self.get_state_size(),
            "obs_shape": self.get_obs_size(),
            "n_actions": self.get_total_actions(),
            "n_agents": self.n_agents,
            "episode_limit": self.episode_limit,
            "agent_features": ["health", "energy/cooldown", "rel_x", "rel_y"],
            "enemy_features": ["health", "rel_x", "rel_y"],
        }

    def get_stats(self) -> dict[str, float]:
        return {
            "battles_won": self.battles_won,
            "battles_game": self.battles_game,
            "battles_draw": self.timeouts,
            "win_rate": self.battles_won / self.battles_game,
            "timeouts": self.timeouts,
            "restarts": self.force_restarts,
        }

    def full_restart(self) -> None:
        self.force_restarts += 1

    def save_replay(self) -> None:
        """There is no game to replay."""

    def render(self, mode: str = "human"):
        raise NotImplementedError("the StarCraft II stand-in does not render")

    def seed(self):
        return self._seed

    def close(self) -> None:
        self.closed = True


class CannotResetException(Exception):
    """smacv2's: the game could not place the generated units; the wrapper draws again."""


class StarCraft2EnvV2StandIn(StarCraft2EnvStandIn):
    """Stand-in for ``smacv2.env.StarCraft2Env``: SMAC's API plus smacv2's keywords and capabilities."""

    _kwargs: ClassVar[frozenset[str]] = SMACV2_KWARGS
    failing_resets = 0  # set > 0 in a test: that many resets raise CannotResetException first

    def reset(self, episode_config: dict | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        """smacv2's reset takes the episode's generated teams and start positions."""
        if self.failing_resets > 0:
            self.failing_resets -= 1
            raise CannotResetException("units could not be placed")
        return self._reset(episode_config or {})

    def only_medivac_left(self, ally: bool) -> bool:
        """smacv2's enemy check never fires: it drops the medivacs, then asks for one medivac."""
        return super().only_medivac_left(ally) if ally else False

    def get_cap_size(self) -> int:
        return self.unit_type_bits

    def get_capabilities_agent(self, agent_id: int) -> np.ndarray:
        cap = np.zeros(self.get_cap_size(), np.float32)
        if self.unit_type_bits:
            cap[self.agents[agent_id].type_id] = 1.0
        return cap

    def get_capabilities(self) -> np.ndarray:
        return np.concatenate([self.get_capabilities_agent(i) for i in range(self.n_agents)])

    def get_obs_agent(self, agent_id: int, fully_observable: bool = False) -> np.ndarray:
        return super().get_obs_agent(agent_id)

    def get_obs_feature_names(self) -> list[str]:
        return [f"obs_{i}" for i in range(self.get_obs_size())]

    def get_state_feature_names(self) -> list[str]:
        return [f"state_{i}" for i in range(self.get_state_size())]

    def get_env_info(self) -> dict[str, Any]:
        return {**super().get_env_info(), "cap_shape": self.get_cap_size()}


class _WeightedTeamsStandIn:
    """smacv2's WeightedTeamsDistribution as the real one draws: its own *unseeded*
    `default_rng()` for unit types and Python's global `random` for the order; keys
    ``ally_team``/``enemy_team``."""

    def __init__(self, config: dict) -> None:
        self.config, self.env_key = config, config["env_key"]
        self.rng = np.random.default_rng()

    def _team(self, n: int) -> list[str]:
        c = self.config
        types, weights = list(c["unit_types"]), np.asarray(c["weights"], float)
        exceptions = set(c.get("exception_unit_types", []))
        team: list[str] = []
        while not team or all(t in exceptions for t in team):
            team = [str(t) for t in self.rng.choice(types, size=n, p=weights / weights.sum())]
            random.shuffle(team)
        return team

    def generate(self) -> dict[str, dict]:
        n, n_en = self.config["n_units"], self.config["n_enemies"]
        team = self._team(n)
        enemies = (team + self._team(n_en - n))[:n_en] if n_en > n else team[:n_en]
        return {self.env_key: {"ally_team": team, "enemy_team": enemies, "id": 0}}


class _SurroundedAndReflectStandIn:
    """smacv2's surrounded-and-reflect start positions (simplified geometry), drawn from its own
    *unseeded* `default_rng()` as the real distribution's."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.rng = np.random.default_rng()

    def generate(self) -> dict[str, dict]:
        c, rng = self.config, self.rng
        n, n_en, size = c["n_units"], c["n_enemies"], float(c["map_x"])
        if rng.random() < c["p"]:  # surrounded: we start in the middle, enemies around us
            ally = size / 2 + rng.uniform(-1, 1, (n, 2))
            angle = rng.uniform(0, 2 * np.pi, n_en)
            enemy = size / 2 + 7.0 * np.stack([np.cos(angle), np.sin(angle)], 1)
        else:  # reflect: random positions on our side, enemies at the mirror image
            ally = np.stack([rng.uniform(2, size / 2 - 3, n), rng.uniform(2, size - 2, n)], 1)
            mirrored = size - ally
            enemy = np.concatenate([mirrored, mirrored[: max(n_en - n, 0)]])[:n_en]
        return {"ally_start_positions": {"item": ally, "id": 0}, "enemy_start_positions": {"item": enemy, "id": 0}}


_DISTRIBUTIONS = {"weighted_teams": _WeightedTeamsStandIn, "surrounded_and_reflect": _SurroundedAndReflectStandIn}


class StarCraftCapabilityEnvWrapperStandIn:
    """Stand-in for ``smacv2.env.StarCraftCapabilityEnvWrapper``.

    Like the real wrapper it takes StarCraft2Env's keywords plus ``capability_config``,
    writes ``n_units``/``n_enemies`` into each distribution's config (mutating the dict it
    is given), builds one distribution per key (``env_key_to_distribution_map``), draws each
    episode's teams and start positions at ``reset()`` from them, and forwards everything
    else to the inner env (``self.env``, also via ``__getattr__``). As in the real package the
    draws are not seeded by the env's ``seed``. Distributions modelled: ``weighted_teams`` and
    ``surrounded_and_reflect``.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.distribution_config = kwargs["capability_config"]
        self.env_key_to_distribution_map: dict[str, Any] = {}
        self._parse_distribution_config()
        self.env = StarCraft2EnvV2StandIn(**kwargs)
        assert self.distribution_config.keys() == kwargs["capability_config"].keys(), (
            "Must give distribution config and capability config the same keys"
        )

    def _parse_distribution_config(self) -> None:
        for env_key, config in self.distribution_config.items():
            if env_key in ("n_units", "n_enemies"):
                continue
            if config["dist_type"] not in _DISTRIBUTIONS:
                raise NotImplementedError(f"the stand-in does not model dist_type {config['dist_type']!r}")
            config["env_key"] = env_key
            config["n_units"] = self.distribution_config["n_units"]
            config["n_enemies"] = self.distribution_config["n_enemies"]
            self.env_key_to_distribution_map[env_key] = _DISTRIBUTIONS[config["dist_type"]](config)

    def _generate(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for distribution in self.env_key_to_distribution_map.values():
            out = {**out, **distribution.generate()}
        return out

    def reset(self):
        try:
            return self.env.reset(self._generate())
        except CannotResetException:  # as smacv2's wrapper: draw again, and return None
            self.reset()

    def __getattr__(self, name: str):
        if name != "env" and hasattr(self.env, name):
            return getattr(self.env, name)
        raise AttributeError(name)

    def get_obs(self):
        return self.env.get_obs()

    def get_obs_feature_names(self):
        return self.env.get_obs_feature_names()

    def get_state(self):
        return self.env.get_state()

    def get_state_feature_names(self):
        return self.env.get_state_feature_names()

    def get_avail_actions(self):
        return self.env.get_avail_actions()

    def get_env_info(self):
        return self.env.get_env_info()

    def get_obs_size(self):
        return self.env.get_obs_size()

    def get_state_size(self):
        return self.env.get_state_size()

    def get_total_actions(self):
        return self.env.get_total_actions()

    def get_capabilities(self):
        return self.env.get_capabilities()

    def get_obs_agent(self, agent_id):
        return self.env.get_obs_agent(agent_id)

    def get_avail_agent_actions(self, agent_id):
        return self.env.get_avail_agent_actions(agent_id)

    def render(self, mode="human"):
        return self.env.render(mode=mode)

    def step(self, actions):
        return self.env.step(actions)

    def get_stats(self):
        return self.env.get_stats()

    def full_restart(self):
        return self.env.full_restart()

    def save_replay(self):
        self.env.save_replay()

    def close(self):
        return self.env.close()


def _heal(unit: Unit) -> None:
    unit.health = min(unit.health_max, unit.health + MEDIVAC_HEAL)


def _dist(a: Unit, b: Unit) -> float:
    return float(np.hypot(a.pos.x - b.pos.x, a.pos.y - b.pos.y))


def _rel(a: Unit, b: Unit) -> tuple[float, float]:
    return (b.pos.x - a.pos.x) / SIGHT_RANGE, (b.pos.y - a.pos.y) / SIGHT_RANGE


def _copy(u: Unit) -> Unit:
    return Unit(
        u.unit_type, u.type_id, u.health, u.health_max, u.shield, u.shield_max, u.damage, Point(u.pos.x, u.pos.y)
    )
