"""MaMuJoCo (gymnasium_robotics `mamujoco_v1`) as a team `MultiAgentEnv` following harl_rllib's contract.

One MuJoCo robot, its actuators split among agents ("HalfCheetah-2x3": two agents, three
joints each). Every agent gets the robot's single reward, so that reward is the team
reward as it is (not summed over agents). The simulator is gymnasium's MuJoCo v5; HARL
used gym's v2 envs through its own copy of the MaMuJoCo code (same robots and partitions,
but v5 changed models, rewards and observations), so returns are not directly comparable
with the paper's.

Observations follow HARL's wrapper by default (``fully_observable=True``): each agent sees
the robot's full observation (`state()`, the v5 env's observation) followed by its one-hot
id. HARL also z-scores each observation and state vector over its own entries; that is
not repeated here, because the actor's and critic's input LayerNorm
(``use_feature_normalization``, on by default, as in HARL, where it follows the z-score)
computes the same thing, up to its epsilon. With ``fully_observable=False`` each agent
gets MaMuJoCo's local view of its joints and of joints up to ``agent_obsk`` hops away.
"""

from __future__ import annotations

import ctypes.util
import os
import re
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from harl_rllib.envs.contract import ALIVE_KEY, STATE_KEY, agent_ids

# The HARL paper's tasks first, then the rest that gymnasium_robotics (or, for HalfCheetah-3x2,
# Walker2d-3x2/6x1, Ant-8x1, Humanoid(Standup)-17x1, HARL's own partitions built here) knows.
# "ManySegmentAnt-NxM" and "ManySegmentSwimmer-NxM" are accepted for any N, M too.
MAMUJOCO_TASKS = (
    "HalfCheetah-2x3",
    "HalfCheetah-6x1",
    "Ant-4x2",
    "Walker2d-2x3",
    "Walker2d-6x1",
    "Hopper-3x1",
    "HalfCheetah-3x2",
    "Ant-2x4",
    "Ant-2x4d",
    "Ant-8x1",
    "Walker2d-3x2",
    "Humanoid-9|8",
    "Humanoid-17x1",
    "HumanoidStandup-9|8",
    "HumanoidStandup-17x1",
    "Swimmer-2x1",
    "Reacher-2x1",
    "Pusher-3p",
)

# HARL's partitions that gymnasium_robotics lacks, by joint name ("Nx1" for any robot is built
# generically: one actuator per agent).
_EXTRA_PARTITIONS: dict[tuple[str, str], list[tuple[str, ...]]] = {
    ("HalfCheetah", "3x2"): [("bfoot", "bshin"), ("bthigh", "ffoot"), ("fshin", "fthigh")],
    ("Walker2d", "3x2"): [
        ("foot_joint", "leg_joint"),
        ("thigh_joint", "foot_left_joint"),
        ("leg_left_joint", "thigh_left_joint"),
    ],
}


# Scenarios gymnasium_robotics lists but that fail at construction with the installed versions.
_BROKEN = {
    "CoupledHalfCheetah": "gymnasium_robotics 1.4.2 indexes data.ten_J as a dense matrix; mujoco 4 stores it "
    "sparse (1-D), so its tendon observations raise IndexError",
}


class MuJoCoGLError(RuntimeError):
    """No working OpenGL backend for MuJoCo's offscreen frames (render())."""


_GL_HELP = (
    "MuJoCo renders offscreen through the backend named by the environment variable MUJOCO_GL, read "
    "when the first frame is drawn and fixed for the process from then on: MUJOCO_GL=egl (headless, GPU "
    "or Mesa's CPU llvmpipe; system packages `apt install libegl1 libgl1-mesa-dri`), MUJOCO_GL=osmesa "
    "(CPU only; `apt install libosmesa6`), or MUJOCO_GL=glfw (needs a display, DISPLAY set)."
)


def _offscreen_gl_backend() -> str | None:
    """The MuJoCo GL backend for offscreen frames, put into MUJOCO_GL when unset.

    Unset, gymnasium tries GLFW first, which without a display fails only later, in
    MuJoCo's context creation; so pick EGL or OSMesa where its library is installed (or
    GLFW with a display) while nothing has rendered yet. gymnasium reads MUJOCO_GL when it
    makes its first viewer, so this works although mujoco itself is imported already.
    """
    backend = os.environ.get("MUJOCO_GL")
    if backend:
        return backend
    # mujoco's egl/osmesa modules refuse a PyOpenGL platform other than their own.
    platform = os.environ.get("PYOPENGL_PLATFORM")
    for name, library in (("egl", "EGL"), ("osmesa", "OSMesa")):
        if platform in (None, "", name) and ctypes.util.find_library(library):
            os.environ["MUJOCO_GL"] = name
            return name
    if os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "glfw"
        return "glfw"
    return None


def _known_tasks_message(task: str, reason: str) -> str:
    return (
        f"Unknown MaMuJoCo task {task!r} ({reason}). Tasks are 'Scenario-agentconf'; known: "
        f"{', '.join(MAMUJOCO_TASKS)}, ManySegmentAnt-NxM, ManySegmentSwimmer-NxM."
    )


def _factorization(scenario: str, agent_conf: str, task: str) -> dict[str, Any]:
    """The agents' joint partition, the joint graph and the global nodes, checked before MuJoCo loads."""
    from gymnasium_robotics.envs.multiagent_mujoco.mamujoco_v1 import get_parts_and_edges

    if scenario in _BROKEN:
        raise ValueError(f"MaMuJoCo task {task!r} does not run here: {_BROKEN[scenario]}")
    try:
        parts, edges, globals_ = get_parts_and_edges(scenario, agent_conf)
        return {"partition": parts, "edges": edges, "globals": globals_}
    except Exception as e:  # the library raises a bare Exception/AssertionError for unknown names
        error = e
    try:  # not one of the library's partitions: maybe HARL's extra ones, over the library's graph
        (whole,), edges, globals_ = get_parts_and_edges(scenario, None)
    except Exception:
        if re.search(r"-v\d+$", scenario):
            raise ValueError(
                _known_tasks_message(task, "drop the version: MaMuJoCo v1 always uses the MuJoCo v5 envs")
            ) from error
        raise ValueError(
            _known_tasks_message(task, f"no scenario {scenario!r} or no partition {agent_conf!r}")
        ) from error
    by_name = {node.label: node for node in whole}
    if (scenario, agent_conf) in _EXTRA_PARTITIONS:
        parts = [tuple(by_name[n] for n in part) for part in _EXTRA_PARTITIONS[(scenario, agent_conf)]]
    elif agent_conf == f"{len(whole)}x1":
        parts = [(node,) for node in whole]
    else:
        raise ValueError(_known_tasks_message(task, f"{scenario} has no partition {agent_conf!r}")) from error
    return {"partition": parts, "edges": edges, "globals": globals_}


class MAMuJoCoTeamEnv(MultiAgentEnv):
    """A MaMuJoCo task with the team reward and the global state (see the module doc).

    env_config:
      * ``task``: "Scenario-agentconf", e.g. "HalfCheetah-2x3" (MAMUJOCO_TASKS); or ``scenario``
        ("HalfCheetah") and ``agent_conf`` ("2x3").
      * ``fully_observable`` (True, HARL's setting): each agent observes the full robot state
        and its one-hot id. False: MaMuJoCo's local observations.
      * ``agent_obsk`` (0, HARL's config value): how many joint hops away an agent sees when
        not fully observable (HARL keeps it in its config but its wrapper ignores it).
      * ``state_type``: "EP", the robot's full observation, the same for every agent; "FP",
        that state followed by the agent's one-hot id (HARL has no FP state for MaMuJoCo,
        its runs use EP; this FP is ours).
      * ``max_episode_steps`` (None: the v5 env's own limit, 1000 for the locomotion tasks,
        HARL's ``episode_limit``); ``seed`` (first reset only); any further keyword goes to
        `mamujoco_v1.parallel_env` and on to the gymnasium MuJoCo env (e.g. ``ctrl_cost_weight``).
      * ``render_mode`` (None; "rgb_array": `render()` returns frames, drawn offscreen by the
        gymnasium MuJoCo env, 480x480 unless ``width``/``height`` say otherwise). It sets
        MUJOCO_GL when unset (see `_offscreen_gl_backend`).

    Actions are clipped to the action space before they reach MuJoCo: RLlib's Gaussian
    samples are unbounded, and although RLlib's default ``normalize_actions=True`` already
    maps them into the bounds (a no-op here then), with ``normalize_actions=False,
    clip_actions=False`` raw samples would arrive, and MuJoCo's control cost would charge
    them beyond the actuator limits.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        from gymnasium_robotics import mamujoco_v1

        config = dict(config or {})
        task = config.pop("task", None)
        scenario, agent_conf = config.pop("scenario", None), config.pop("agent_conf", None)
        if task is not None:
            scenario, sep, agent_conf = str(task).rpartition("-")
            if not sep or not scenario:
                raise ValueError(_known_tasks_message(str(task), "expected 'Scenario-agentconf'"))
        elif scenario is None or agent_conf is None:
            raise ValueError("MaMuJoCo needs env_config 'task' (e.g. 'HalfCheetah-2x3') or 'scenario' + 'agent_conf'.")
        self.task = f"{scenario}-{agent_conf}"
        self.fully_observable = bool(config.pop("fully_observable", True))
        self.state_type = config.pop("state_type", "EP")
        if self.state_type not in ("EP", "FP"):
            raise ValueError(f"state_type must be 'EP' or 'FP'; got {self.state_type!r}")
        self._seed = config.pop("seed", None)
        self.render_mode = config.pop("render_mode", None)
        self._gl_backend = _offscreen_gl_backend() if self.render_mode in ("rgb_array", "depth_array") else None
        factorization = _factorization(scenario, agent_conf, self.task)
        self.env = mamujoco_v1.parallel_env(
            scenario,
            agent_conf,
            agent_obsk=config.pop("agent_obsk", 0),
            agent_factorization=factorization,
            max_episode_steps=config.pop("max_episode_steps", None),
            render_mode=self.render_mode,
            **config,
        )
        n = len(self.env.possible_agents)
        self._lib_ids = list(self.env.possible_agents)
        self.possible_agents = agent_ids(n)
        self.agents = list(self.possible_agents)
        self._lib_of = dict(zip(self.possible_agents, self._lib_ids, strict=True))
        self._one_hot = {a: np.eye(n, dtype=np.float32)[i] for i, a in enumerate(self.possible_agents)}

        state_dim = int(np.asarray(self.env.state()).shape[0])
        self.action_spaces = {a: self.env.action_space(self._lib_of[a]) for a in self.possible_agents}
        self._low = {a: space.low.astype(np.float64) for a, space in self.action_spaces.items()}
        self._high = {a: space.high.astype(np.float64) for a, space in self.action_spaces.items()}
        self.observation_spaces = {
            a: gym.spaces.Box(
                -np.inf,
                np.inf,
                (state_dim + n,) if self.fully_observable else self.env.observation_space(self._lib_of[a]).shape,
                np.float32,
            )
            for a in self.possible_agents
        }
        self.state_space = gym.spaces.Box(
            -np.inf, np.inf, (state_dim + (n if self.state_type == "FP" else 0),), np.float32
        )

    def _obs_and_infos(self, local_obs: dict[str, np.ndarray] | None) -> tuple[dict, dict]:
        """Observations and infos (state, alive) of every agent; local_obs: the library's, by its ids."""
        state = np.asarray(self.env.state(), dtype=np.float32)
        if self.fully_observable:
            obs = {a: np.concatenate([state, self._one_hot[a]]) for a in self.possible_agents}
        else:
            obs = {a: np.asarray(local_obs[self._lib_of[a]], dtype=np.float32) for a in self.possible_agents}
        if self.state_type == "FP":
            infos = {a: {STATE_KEY: np.concatenate([state, self._one_hot[a]]), ALIVE_KEY: True} for a in obs}
        else:
            infos = {a: {STATE_KEY: state, ALIVE_KEY: True} for a in obs}
        return obs, infos

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is None and self._seed is not None:
            seed, self._seed = self._seed, None
        local_obs, _ = self.env.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        return self._obs_and_infos(local_obs)

    def step(self, action_dict: dict[str, Any]):
        actions = {
            self._lib_of[a]: np.clip(np.asarray(action_dict[a], dtype=np.float64), self._low[a], self._high[a])
            for a in self.possible_agents
        }
        if self.fully_observable:  # skips building the local observations nobody reads
            global_action = self.env.map_local_actions_to_global_action(actions)
            _, reward, term, trunc, _ = self.env.single_agent_env.step(global_action)
            local_obs = None
        else:
            local_obs, rewards, terms, truncs, _ = self.env.step(actions)
            first = self._lib_ids[0]
            reward, term, trunc = rewards[first], terms[first], truncs[first]
        obs, infos = self._obs_and_infos(local_obs)
        term, trunc = bool(term), bool(trunc)
        team = float(reward)
        terminateds = {a: term for a in self.possible_agents}
        truncateds = {a: trunc for a in self.possible_agents}
        terminateds["__all__"], truncateds["__all__"] = term, trunc and not term
        if term or trunc:
            self.agents = []
        return obs, {a: team for a in self.possible_agents}, terminateds, truncateds, infos

    def render(self) -> np.ndarray:
        """The robot now as an (H, W, 3) uint8 frame (the gymnasium env's tracking camera)."""
        if self.render_mode != "rgb_array":
            raise RuntimeError(
                f"MAMuJoCoTeamEnv.render() needs the env built with env_config render_mode='rgb_array' "
                f"(got render_mode={self.render_mode!r})."
            )
        if self._gl_backend is None:
            raise MuJoCoGLError(f"MuJoCo found no OpenGL library (no libEGL, no libOSMesa, no DISPLAY). {_GL_HELP}")
        try:
            frame = self.env.render()
        except gym.error.Error:
            raise  # gymnasium's own (e.g. render before reset), not OpenGL's
        except Exception as e:  # a failing backend raises FatalError, ImportError, AttributeError, ...
            raise MuJoCoGLError(
                f"MuJoCo could not render offscreen with MUJOCO_GL={self._gl_backend!r} "
                f"({type(e).__name__}: {e}). {_GL_HELP}"
            ) from e
        return np.ascontiguousarray(frame, dtype=np.uint8)

    def close(self) -> None:
        self.env.close()
