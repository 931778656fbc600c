"""SMAC/SMACv2 adapters through harl_rllib's env contract, on the StarCraft II stand-ins and, when
oxwhirl's smac and the game are installed, on the real StarCraft2Env too."""

from __future__ import annotations

import builtins
import importlib.util
import sys
import types

import numpy as np
import pytest
from standins.starcraft2_standin import (
    StarCraft2EnvStandIn,
    StarCraft2EnvV2StandIn,
    StarCraftCapabilityEnvWrapperStandIn,
)

from harl_rllib.envs.smac import (
    SMAC_MAPS,
    SMAC_PIP,
    SMACV2_PAPER_TASKS,
    SMACV2_SCENARIOS,
    SMACV2_TASKS,
    SMACNotInstalledError,
    SMACTeamEnv,
    SMACv2TeamEnv,
    StarCraftIINotFoundError,
    find_starcraft2,
)

from conftest import check_team_batch

NO_OP, STOP, MOVE_EAST, FIRST_ATTACK = 0, 1, 4, 6


def _real_smac_missing() -> str | None:
    """Why the real-SMAC variants are skipped, or None when smac.env and StarCraft II are both there."""
    try:
        if importlib.util.find_spec("smac.env") is None:
            return "the installed `smac` has no smac.env (SMAC3?)"
    except ImportError:
        return f"oxwhirl's smac is not installed ({SMAC_PIP})"
    try:
        find_starcraft2("3m")
    except StarCraftIINotFoundError as e:
        return f"StarCraft II not found: {str(e).splitlines()[0]}"
    return None


REAL_MISSING = _real_smac_missing()
# None: the real StarCraft2Env (the adapter's default); otherwise the class to inject.
BACKENDS = [
    pytest.param(StarCraft2EnvStandIn, id="standin"),
    pytest.param(
        None, id="real", marks=pytest.mark.skipif(REAL_MISSING is not None, reason=f"real SMAC: {REAL_MISSING}")
    ),
]


def make(backend, **config) -> SMACTeamEnv:
    if backend is not None:
        config["sc2_env_cls"] = backend
    return SMACTeamEnv(config)


def random_masked(obs: dict, rng: np.random.Generator) -> dict:
    return {a: int(rng.choice(np.flatnonzero(o["action_mask"]))) for a, o in obs.items()}


def focus_fire(obs: dict) -> dict:
    """Each agent shoots the lowest-numbered enemy in its range, else walks east (towards the enemy)."""
    actions = {}
    for a, o in obs.items():
        mask = o["action_mask"]
        attacks = np.flatnonzero(mask[FIRST_ATTACK:])
        if attacks.size:
            actions[a] = FIRST_ATTACK + int(attacks[0])
        else:
            actions[a] = next(x for x in (MOVE_EAST, STOP, NO_OP) if mask[x])
    return actions


@pytest.mark.parametrize("backend", BACKENDS)
def test_spaces_ids_and_state_types(backend):
    env = make(backend, map_name="3m")
    info = env.env_info
    assert env.possible_agents == ["agent_0", "agent_1", "agent_2"]
    space = env.observation_spaces["agent_0"]
    assert space["obs"].shape == (info["obs_shape"] + 3,)  # SMAC: the one-hot id appended (HARL's default)
    assert space["action_mask"].shape == (9,) and env.action_spaces["agent_2"].n == 9  # 6 + 3 enemies
    assert env.state_space.shape == (info["state_shape"],)
    obs, infos = env.reset(seed=0)
    assert set(obs) == set(infos) == set(env.possible_agents)
    for a in env.possible_agents:
        assert space.contains(obs[a])
        assert obs[a]["action_mask"][NO_OP] == 0 and infos[a]["alive"]
        assert infos[a]["state"].shape == env.state_space.shape
    np.testing.assert_array_equal(infos["agent_0"]["state"], infos["agent_2"]["state"])  # EP: one state
    env.close()

    fp = make(backend, map_name="3m", state_type="FP", seed=0)
    obs_fp, infos_fp = fp.reset()
    ws, od = info["state_shape"], info["obs_shape"]
    assert fp.state_space.shape == (ws + od + 3,)
    s1 = infos_fp["agent_1"]["state"]
    assert s1.shape == fp.state_space.shape and s1.dtype == np.float32
    np.testing.assert_array_equal(s1[:ws], fp.env.get_state())
    np.testing.assert_array_equal(s1[ws : ws + od], obs_fp["agent_1"]["obs"][:od])
    np.testing.assert_array_equal(s1[-3:], [0.0, 1.0, 0.0])
    fp.close()

    big = make(backend, map_name="10m_vs_11m")
    assert big.possible_agents == [f"agent_{i}" for i in range(10)] == sorted(big.possible_agents)
    assert big.action_spaces["agent_9"].n == 6 + 11
    big.close()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("obs_agent_id", [None, True, False])
def test_observations_with_and_without_the_agent_id(backend, obs_agent_id):
    """SMAC's default appends each agent's one-hot id to its observation, as HARL's StarCraft2Env
    (`obs_agent_id=True`); `obs_agent_id=False` gives SMAC's own observation. SMACv2's default
    has no id (HARL's SMACv2 env), and the option adds it."""
    config = {} if obs_agent_id is None else {"obs_agent_id": obs_agent_id}
    env = make(backend, map_name="3m", seed=0, **config)
    obs, _ = env.reset()
    od = env.env_info["obs_shape"]
    with_id = obs_agent_id is not False
    for k, a in enumerate(env.possible_agents):
        assert env.observation_spaces[a]["obs"].shape == (od + 3 * with_id,)
        np.testing.assert_array_equal(obs[a]["obs"][:od], env.env.get_obs_agent(k))
        if with_id:
            np.testing.assert_array_equal(obs[a]["obs"][od:], np.eye(3)[k])
    env.close()

    for v2_config, want in (({}, False), ({"obs_agent_id": True}, True)):
        v2 = SMACv2TeamEnv({"task": "terran_5_vs_5", "sc2_env_cls": StarCraftCapabilityEnvWrapperStandIn, **v2_config})
        obs, _ = v2.reset(seed=0)
        od = v2.env_info["obs_shape"]
        assert obs["agent_4"]["obs"].shape == (od + 5 * want,)
        if want:
            np.testing.assert_array_equal(obs["agent_4"]["obs"][od:], np.eye(5)[4])


def test_rllib_reset_sequence_launches_one_game_and_counts_max_reward_once(ray_session):
    """RLlib's env check resets every new env (seed 42) and steps it once, then the runner resets
    it again, before any battle ends. The real StarCraft2Env launches a game at each reset while
    no battle has ended and adds the enemies' health and shields to `max_reward` each time (3m:
    365 → 500, so a won battle scores ≈ 14.6 instead of 20). Through RLlib's env runner (the
    stand-in counts launches as the real env would): one game per env, max_reward counted once,
    and a game seed of its own for every env (`test_game_seeds_differ_per_env_and_runner`: and
    every runner)."""
    from harl_rllib import HAPPOConfig

    config = (
        HAPPOConfig()
        .environment(SMACTeamEnv, env_config={"map_name": "3m", "sc2_env_cls": StarCraft2EnvStandIn})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=40)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        algo.env_runner.sample(num_timesteps=40)
        envs = [e.unwrapped for e in algo.env_runner.env.envs]
        seen = [(e.env.launches, e.env.max_reward, e.game_seed) for e in envs]
    finally:
        algo.stop()
    one_count = 3 * 10 + 200 + 3 * 45.0  # kills, the win, the enemies' health once (marines: 45 hp, no shield)
    assert all(launches == 1 for launches, _, _ in seen), seen
    assert all(max_reward == pytest.approx(one_count) for _, max_reward, _ in seen), seen
    assert len({seed for _, _, seed in seen}) == 2, seen


def test_game_seeds_differ_per_env_and_runner():
    """HARL's rule, seed + 1000 · rank: every env of every runner gets its own game seed."""
    from ray.rllib.env.env_context import EnvContext

    seeds = []
    for worker in (1, 2):
        ctx = EnvContext({"map_name": "3m", "seed": 7, "sc2_env_cls": StarCraft2EnvStandIn}, worker)
        for _ in range(2):  # a runner's envs share its EnvContext
            env = SMACTeamEnv(ctx)
            env.reset()
            seeds.append(env.env._seed)
            assert env.env._seed == env.game_seed and (env.game_seed - 7) % 1000 == 0
    assert len(set(seeds)) == 4, seeds


def test_smacv2_battles_repeat_with_the_seed():
    """smacv2 draws each battle's teams and start positions from unseeded generators and shuffles
    unit order with Python's `random` (the stand-in does the same); the adapter seeds them from
    the env's game seed: the same seed gives the same battles, another seed others."""

    def battles(seed: int) -> list[np.ndarray]:
        env = SMACv2TeamEnv(
            {"task": "terran_5_vs_5", "seed": seed, "sc2_env_cls": StarCraftCapabilityEnvWrapperStandIn}
        )
        out = []
        for _ in range(4):
            env.reset()
            out.append(np.asarray(env.env.get_state()))
        return out

    first, again, other = battles(3), battles(3), battles(4)
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(first, other, strict=True))


def test_smacv2_reset_retry_returns_nothing_and_the_adapter_copes():
    """smacv2's wrapper answers a CannotResetException by drawing new teams and resetting again,
    and then returns None; the adapter reads the battle from the env, not from reset's value."""
    env = SMACv2TeamEnv({"task": "terran_5_vs_5", "seed": 1, "sc2_env_cls": StarCraftCapabilityEnvWrapperStandIn})
    env.reset()
    env.env.env.failing_resets = 2
    assert env.env.reset() is None  # the wrapper's own answer after its retries
    env.env.env.failing_resets = 1
    obs, infos = env.reset()
    assert set(obs) == set(env.possible_agents) and env.env.env.failing_resets == 0
    np.testing.assert_array_equal(infos["agent_0"]["state"], env.env.get_state())


def test_smac_and_smacv2_in_one_process_is_a_clear_error(monkeypatch):
    """Both packages register SMAC's maps with pysc2 under the same names; the second import
    would fail deep in pysc2. The adapter says what to do instead."""
    from harl_rllib.envs import smac as adapter

    monkeypatch.setitem(sys.modules, "smacv2", types.SimpleNamespace(env=object()))
    monkeypatch.delitem(sys.modules, "smac", raising=False)
    with pytest.raises(SMACNotInstalledError, match="separate processes"):
        adapter._import_smac_env()


@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_play_dead_agents_and_episode_stats(backend):
    """Random masked play: every agent every step; the dead keep alive=False and a no-op-only mask."""
    env = make(backend, map_name="3m", seed=3)
    rng = np.random.default_rng(0)
    obs, infos = env.reset()
    dead_rows = ends = 0
    died: set[str] = set()
    for _ in range(300):
        obs, rew, term, trunc, infos = env.step(random_masked(obs, rng))
        assert set(obs) == set(rew) == set(infos) == set(env.possible_agents)
        assert len(set(rew.values())) == 1  # the team reward, to everyone
        for a in env.possible_agents:
            if infos[a]["alive"]:
                assert a not in died, "an agent came back to life"
                assert obs[a]["action_mask"][NO_OP] == 0
            else:
                died.add(a)
                dead_rows += 1
                np.testing.assert_array_equal(obs[a]["action_mask"], np.eye(9, dtype=np.float32)[NO_OP])
                assert not obs[a]["obs"][: env.env_info["obs_shape"]].any()  # SMAC zeroes a dead unit's observation
        if term["__all__"] or trunc["__all__"]:
            assert not (term["__all__"] and trunc["__all__"])
            stats = infos["agent_0"]["episode_stats"]
            assert all(i["episode_stats"] is stats for i in infos.values())
            assert set(stats) == {"battle_won", "dead_allies", "dead_enemies"}
            assert stats["battle_won"] in (0.0, 1.0)
            if term["__all__"]:  # a battle ends when one side is dead
                assert stats["dead_allies"] == 3 or stats["dead_enemies"] == 3
            assert stats["dead_allies"] == sum(not i["alive"] for i in infos.values())
            ends += 1
            died.clear()
            obs, infos = env.reset()
        else:
            assert all("episode_stats" not in i for i in infos.values())
    assert dead_rows > 0 and ends >= 3
    # Focused fire wins (what the win rate measures).
    wins = []
    for _ in range(3):
        obs, _ = env.reset()
        while True:
            obs, _, term, trunc, infos = env.step(focus_fire(obs))
            if term["__all__"] or trunc["__all__"]:
                wins.append(infos["agent_0"]["episode_stats"]["battle_won"])
                break
    if backend is not None:
        assert wins == [1.0, 1.0, 1.0] and term["__all__"] and not trunc["__all__"]
    env.close()


class ShortBattles(StarCraft2EnvStandIn):
    """The stand-in with a 4-step episode limit (SMAC takes the limit from the map)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.episode_limit = 4


@pytest.mark.parametrize("continuing_episode", [False, True])
def test_time_limit_truncates(continuing_episode):
    """SMAC ends a timed-out battle with terminated=True; the adapter reports a truncation
    (from info["episode_limit"] with continuing_episode, else from the timeouts counter)."""
    env = SMACTeamEnv({"map_name": "3m", "sc2_env_cls": ShortBattles, "continuing_episode": continuing_episode})
    for _ in range(2):
        obs, _ = env.reset()
        for t in range(4):
            obs, _, term, trunc, infos = env.step(dict.fromkeys(env.possible_agents, STOP))
            assert term["__all__"] is False
            assert trunc["__all__"] is (t == 3) and all(trunc[a] is (t == 3) for a in env.possible_agents)
        assert infos["agent_1"]["episode_stats"]["battle_won"] == 0.0
        assert env.agents == []


class LostConnection(StarCraft2EnvStandIn):
    """SMAC's answer when the game's connection breaks mid-battle: restart it, return (0, True, {})."""

    def step(self, actions):
        if self._episode_steps == 2:
            self.full_restart()
            return 0, True, {}
        return super().step(actions)


def test_lost_game_connection_truncates():
    env = SMACTeamEnv({"map_name": "3m", "sc2_env_cls": LostConnection})
    env.reset(seed=0)
    for t in range(3):
        _, rew, term, trunc, infos = env.step(dict.fromkeys(env.possible_agents, STOP))
        assert not term["__all__"] and trunc["__all__"] is (t == 2)
    assert rew["agent_0"] == 0.0 and env.env.force_restarts == 1
    assert infos["agent_2"]["episode_stats"] == {"battle_won": 0.0, "dead_allies": 0.0, "dead_enemies": 0.0}


def test_sparse_reward_alive_from_mask():
    """With reward_sparse SMAC never updates death_tracker_ally; the no-op-only mask still tells."""
    config = {"map_name": "3m", "sc2_env_cls": StarCraft2EnvStandIn, "reward_sparse": True, "reward_scale": False}
    env = SMACTeamEnv({**config, "seed": 0})
    obs, _ = env.reset()
    rng = np.random.default_rng(1)
    while True:
        obs, rew, term, trunc, infos = env.step(random_masked(obs, rng))
        if term["__all__"] or trunc["__all__"]:
            break
        assert rew["agent_0"] == 0.0
    assert not env.env.death_tracker_ally.any()
    assert infos["agent_0"]["episode_stats"]["dead_allies"] == 3.0
    assert not any(i["alive"] for i in infos.values())
    assert rew["agent_0"] in (-1.0, 1.0)


def test_unavailable_actions_replaced_or_raised():
    """SMAC asserts on an unavailable action; RLlib's env check steps mask-blind random actions,
    so the adapter replaces them by default (flagged and counted), or raises if asked to."""
    env = SMACTeamEnv({"map_name": "3m", "sc2_env_cls": "standins.starcraft2_standin:StarCraft2EnvStandIn"})
    env.reset(seed=0)
    with pytest.raises(AssertionError, match="Agent 0 cannot perform action 0"):
        env.env.step([NO_OP, STOP, STOP])  # the stand-in, like SMAC: no-op is for the dead only
    before = StarCraft2EnvStandIn.unavailable_actions_taken
    _, _, _, _, infos = env.step({"agent_0": NO_OP, "agent_1": STOP, "agent_2": 8})  # 8: attack, out of range
    assert StarCraft2EnvStandIn.unavailable_actions_taken == before
    assert env.replaced_actions == 2 and np.array_equal(env.env.last_action.argmax(1), [STOP, STOP, STOP])
    assert infos["agent_0"]["action_replaced"] and "action_replaced" not in infos["agent_1"]
    with pytest.raises(ValueError, match="No action for"):
        env.step({"agent_0": STOP})

    strict = SMACTeamEnv({"map_name": "3m", "sc2_env_cls": StarCraft2EnvStandIn, "unavailable_actions": "raise"})
    strict.reset(seed=0)
    with pytest.raises(ValueError, match=r"agent_2 took unavailable action 8; available: \[1, 2, 3, 4, 5\]"):
        strict.step({"agent_0": STOP, "agent_1": STOP, "agent_2": 8})


def test_medivacs_heal_and_a_team_of_only_medivacs_loses():
    """MMM (stand-in, as SMAC): a medivac's target actions name allies it can heal (alive, in
    range, not medivacs); a heal restores health; the battle ends lost once only medivacs are
    left of our team, won once the only enemy left is a medivac (SMAC; smacv2 never ends so)."""
    sc2 = StarCraft2EnvStandIn(map_name="MMM", seed=0)
    sc2.reset()
    medivacs = [i for i, u in sc2.agents.items() if u.unit_type == "medivac"]
    others = [i for i, u in sc2.agents.items() if u.unit_type != "medivac"]
    assert medivacs and others
    med = medivacs[0]
    mpos = sc2.agents[med].pos
    in_range = {t for t in others if np.hypot(sc2.agents[t].pos.x - mpos.x, sc2.agents[t].pos.y - mpos.y) <= 6.0}
    avail = sc2.get_avail_agent_actions(med)
    assert {a - FIRST_ATTACK for a in range(FIRST_ATTACK, len(avail)) if avail[a]} == in_range
    assert med not in in_range and in_range
    target = min(in_range)
    sc2.agents[target].health -= 30
    before = sc2.agents[target].health
    actions = [STOP] * sc2.n_agents
    actions[med] = FIRST_ATTACK + target
    sc2.step(actions)  # the enemies start out of range: nothing else changes our health this step
    assert sc2.agents[target].health == before + 9.0

    for i in others:  # only medivacs left of our team: lost
        sc2.agents[i].health = 0.0
    reward, terminated, info = sc2.step([int(np.flatnonzero(a)[-1]) for a in sc2.get_avail_actions()])
    assert terminated and not info["battle_won"] and sc2.battles_won == 0

    for env_cls, ends in ((StarCraft2EnvStandIn, True), (StarCraft2EnvV2StandIn, False)):
        sc2 = env_cls(map_name="MMM", seed=0)
        sc2.reset()
        (enemy_medivac, *_) = [i for i, u in sc2.enemies.items() if u.unit_type == "medivac"]
        for i in sc2.enemies:
            if i != enemy_medivac:
                sc2.enemies[i].health = sc2.enemies[i].shield = 0.0
        _, terminated, info = sc2.step([STOP] * sc2.n_agents)
        assert terminated is ends and info["battle_won"] is ends

    # Through the adapter: random masked play with heals never takes an unavailable action,
    # and every finished battle ended by SMAC's rules.
    env = make(StarCraft2EnvStandIn, map_name="MMM", seed=1)
    rng = np.random.default_rng(0)
    obs, _ = env.reset()
    heals = ends = 0
    for _ in range(400):
        actions = random_masked(obs, rng)
        heals += sum(
            env.env.agents[int(a.split("_")[1])].unit_type == "medivac" and x >= FIRST_ATTACK
            for a, x in actions.items()
        )
        obs, _, term, trunc, infos = env.step(actions)
        if term["__all__"]:
            ours = [u for u in env.env.agents.values() if u.health > 0]
            theirs = [u for u in env.env.enemies.values() if u.health > 0]
            assert all(u.unit_type == "medivac" for u in ours) or [u.unit_type for u in theirs] in ([], ["medivac"])
            ends += 1
        if term["__all__"] or trunc["__all__"]:
            obs, _ = env.reset()
    assert heals > 0 and ends > 0


def test_seeds():
    def rollout(config, seed=None):
        env = SMACTeamEnv({"map_name": "3m", "sc2_env_cls": StarCraft2EnvStandIn, **config})
        obs, _ = env.reset(seed=seed)
        rng, out = np.random.default_rng(0), []
        for _ in range(20):
            obs, rew, term, trunc, infos = env.step(random_masked(obs, rng))
            out.append((rew["agent_0"], float(infos["agent_0"]["state"].sum())))
            if term["__all__"] or trunc["__all__"]:
                obs, _ = env.reset()
        return out, env.env.seed()

    assert rollout({"seed": 5}) == rollout({"seed": 5})
    assert rollout({}, seed=7) == rollout({"seed": 7}) and rollout({}, seed=7)[1] == 7
    assert rollout({"seed": 5}, seed=9)[1] == 5  # the env config's seed wins
    assert rollout({"seed": 5})[0] != rollout({"seed": 6})[0]


def test_smacv2_scenarios_and_adapter():
    assert set(SMACV2_PAPER_TASKS) <= set(SMACV2_TASKS) and len(SMACV2_TASKS) == 15
    z = SMACV2_SCENARIOS["zerg_10_vs_11"]
    assert z["map_name"] == "10gen_zerg" and z["obs_own_pos"] and z["use_unit_ranges"]
    cap = z["capability_config"]
    assert (cap["n_units"], cap["n_enemies"]) == (10, 11)
    assert cap["team_gen"] == {
        "dist_type": "weighted_teams",
        "unit_types": ["zergling", "baneling", "hydralisk"],
        "weights": [0.45, 0.1, 0.45],
        "exception_unit_types": ["baneling"],
        "observe": True,
    }
    assert cap["start_positions"] == {"dist_type": "surrounded_and_reflect", "p": 0.5, "map_x": 32, "map_y": 32}
    assert "exception_unit_types" not in SMACV2_SCENARIOS["protoss_5_vs_5"]["capability_config"]["team_gen"]
    assert SMACV2_SCENARIOS["terran_5_vs_5"]["capability_config"]["team_gen"]["exception_unit_types"] == ["medivac"]

    env = SMACv2TeamEnv({"map_name": "zerg_10_vs_11", "sc2_env_cls": StarCraftCapabilityEnvWrapperStandIn})
    assert env.possible_agents[0] == "agent_0" and len(env.possible_agents) == 10
    assert env.action_spaces["agent_3"].n == 6 + 11
    assert env.env.env.map_name == "10gen_zerg"
    assert "env_key" in env.env.distribution_config["team_gen"]  # the wrapper filled in its copy ...
    assert "env_key" not in cap["team_gen"]  # ... not our scenario table
    rng = np.random.default_rng(0)
    obs, infos = env.reset(seed=2)
    saw_dead = False
    for _ in range(100):
        obs, rew, term, trunc, infos = env.step(random_masked(obs, rng))
        assert infos["agent_0"]["state"].shape == env.state_space.shape
        saw_dead |= not all(i["alive"] for i in infos.values())
        if term["__all__"] or trunc["__all__"]:
            assert "battle_won" in infos["agent_9"]["episode_stats"]
            obs, infos = env.reset()
    assert saw_dead
    fp = SMACv2TeamEnv(
        {"task": "terran_5_vs_5", "state_type": "FP", "sc2_env_cls": StarCraftCapabilityEnvWrapperStandIn}
    )
    _, infos = fp.reset(seed=0)
    assert infos["agent_4"]["state"].shape == fp.state_space.shape
    np.testing.assert_array_equal(infos["agent_4"]["state"][-5:], np.eye(5)[4])


def test_config_errors():
    with pytest.raises(ValueError, match=r"Unknown SMAC map '4m'; known: 3m, 8m"):
        SMACTeamEnv({"map_name": "4m", "sc2_env_cls": StarCraft2EnvStandIn})
    with pytest.raises(ValueError, match=r"Unknown SMACv2 scenario 'zerg_3_vs_3'; known: protoss_5_vs_5"):
        SMACv2TeamEnv({"task": "zerg_3_vs_3", "sc2_env_cls": StarCraftCapabilityEnvWrapperStandIn})
    with pytest.raises(ValueError, match="discrete"):
        SMACTeamEnv({"map_name": "3m", "continuous_actions": True, "sc2_env_cls": StarCraft2EnvStandIn})
    with pytest.raises(ValueError, match="unavailable_actions"):
        SMACTeamEnv({"map_name": "3m", "unavailable_actions": "ignore", "sc2_env_cls": StarCraft2EnvStandIn})
    with pytest.raises(ValueError, match="state_type"):
        SMACTeamEnv({"map_name": "3m", "state_type": "AS", "sc2_env_cls": StarCraft2EnvStandIn})
    with pytest.raises(ValueError, match="module:Name"):
        SMACTeamEnv({"map_name": "3m", "sc2_env_cls": "standins.starcraft2_standin"})
    with pytest.raises(TypeError, match="not_a_smac_option"):  # pass-through keywords reach StarCraft2Env
        SMACTeamEnv({"map_name": "3m", "sc2_env_cls": StarCraft2EnvStandIn, "not_a_smac_option": 1})
    assert set(SMAC_MAPS) >= {"3m", "8m", "2s3z", "3s5z", "5m_vs_6m", "MMM2", "corridor", "6h_vs_8z", "27m_vs_30m"}


def test_smac_not_installed(monkeypatch):
    real_import = builtins.__import__

    def no_smac(name, *args, **kwargs):
        if name == "smac" or name.startswith(("smac.", "smacv2")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_smac)
    with pytest.raises(SMACNotInstalledError, match=r"pip install 'git\+https://github.com/oxwhirl/smac.git'") as e:
        SMACTeamEnv({"map_name": "3m"})
    assert "SMAC3" in str(e.value)
    with pytest.raises(ImportError, match=r"pip install 'git\+https://github.com/oxwhirl/smacv2.git'"):
        SMACv2TeamEnv({"task": "zerg_5_vs_5"})


def test_smac3_installed_instead(monkeypatch):
    """PyPI's `smac` (SMAC3, an optimizer) imports fine but has no smac.env."""
    smac3 = types.ModuleType("smac")
    smac3.__path__ = []  # a package, without an env subpackage
    smac3.__file__ = "/site-packages/smac/__init__.py"
    monkeypatch.setitem(sys.modules, "smac", smac3)
    monkeypatch.delitem(sys.modules, "smac.env", raising=False)
    with pytest.raises(SMACNotInstalledError, match=r"SMAC3.*pip uninstall -y smac && pip install 'git\+https"):
        SMACTeamEnv({"map_name": "3m"})


def _fake_module(monkeypatch, name: str, **attrs) -> None:
    module = types.ModuleType(name)
    module.__path__ = []
    for key, value in attrs.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


def test_starcraft2_missing(monkeypatch, tmp_path):
    """smac installed (faked here by the stand-in) but no game: say where we looked and how to install."""
    _fake_module(monkeypatch, "smac")
    _fake_module(monkeypatch, "smac.env", StarCraft2Env=StarCraft2EnvStandIn)
    _fake_module(monkeypatch, "smacv2")
    _fake_module(monkeypatch, "smacv2.env", StarCraftCapabilityEnvWrapper=StarCraftCapabilityEnvWrapperStandIn)
    monkeypatch.setenv("SC2PATH", str(tmp_path))
    with pytest.raises(StarCraftIINotFoundError, match="not installed at") as e:
        SMACTeamEnv({"map_name": "3m"})
    for hint in ("SC2PATH=", "cluster/install_sc2.sh", "SC2.4.10.zip", "iagreetotheeula", "SMAC_Maps.zip"):
        assert hint in str(e.value)
    (tmp_path / "Versions").mkdir()
    with pytest.raises(StarCraftIINotFoundError, match=r"map .*SMAC_Maps/3m\.SC2Map is missing"):
        SMACTeamEnv({"map_name": "3m"})
    maps = tmp_path / "Maps" / "SMAC_Maps"
    maps.mkdir(parents=True)
    (maps / "3m.SC2Map").touch()
    assert SMACTeamEnv({"map_name": "3m"}).possible_agents == ["agent_0", "agent_1", "agent_2"]
    with pytest.raises(StarCraftIINotFoundError, match=r"32x32_flat\.SC2Map is missing") as e:
        SMACv2TeamEnv({"task": "protoss_5_vs_5"})
    assert "smacv2/releases/download/maps/SMAC_Maps.zip" in str(e.value)
    (maps / "32x32_flat.SC2Map").touch()
    assert len(SMACv2TeamEnv({"task": "protoss_5_vs_5"}).possible_agents) == 5


@pytest.mark.parametrize("sampling", ["team", "episodes"])
def test_rllib_happo_never_takes_an_unavailable_action(ray_session, sampling):
    """One HAPPO iteration on 3m: no action RLlib sends is unavailable (the adapter would
    replace and count it, the stand-in would assert as SMAC does and count it); the win rate
    reaches RLlib's env-runner metrics. On both sampling paths."""
    from harl_rllib import HAPPOConfig

    StarCraft2EnvStandIn.unavailable_actions_taken = 0
    StarCraft2EnvStandIn.steps_taken = 0
    config = (
        HAPPOConfig()
        .environment(SMACTeamEnv, env_config={"map_name": "3m", "sc2_env_cls": StarCraft2EnvStandIn})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1, sampling=sampling)
        .training(train_batch_size_per_learner=200, num_epochs=1, critic_epoch=1)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        (env,) = [e.unwrapped for e in algo.env_runner.env.envs]
        env.replaced_actions = 0  # RLlib's env check stepped it once with mask-blind random actions
        result = algo.train()
        assert "battle_won" in result["env_runners"]
        assert 0.0 <= result["env_runners"]["battle_won"] <= 1.0
        assert result["sampling"] == sampling
        episodes = algo.env_runner.sample(num_timesteps=100, random_actions=False)
        if sampling == "team":
            (rollout,) = episodes
            for aid in rollout.agents:
                masks, actions = rollout.obs[aid]["action_mask"], rollout.actions[aid].astype(np.int64)
                assert np.all(np.take_along_axis(masks, actions[..., None], -1) == 1), f"{aid} took a masked action"
            assert env.replaced_actions == 0
            assert sum(int((rollout.alive[a] == 0).sum()) for a in rollout.agents) > 0  # deaths are masked
            return
        for ep in episodes:
            for aid, sa in ep.agent_episodes.items():
                obs = sa.get_observations()  # a dict of arrays once numpy'd, else a list of dicts
                masks = np.asarray(obs["action_mask"] if isinstance(obs, dict) else [o["action_mask"] for o in obs])
                masks = masks[: len(sa)]
                actions = np.asarray(sa.get_actions())
                assert np.all(masks[np.arange(len(actions)), actions] == 1), f"{aid} took a masked action"
                assert not any(info.get("action_replaced") for info in sa.get_infos())
        assert env.replaced_actions == 0
        assert check_team_batch(algo, episodes) > 0  # rows aligned; dead agents' rows masked
    finally:
        algo.stop()
    assert StarCraft2EnvStandIn.steps_taken >= 300
    assert StarCraft2EnvStandIn.unavailable_actions_taken == 0
