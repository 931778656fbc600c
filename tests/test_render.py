"""Frames of every env family (for recording evaluation episodes), from the real envs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest


@pytest.fixture
def restore_environ() -> Iterator[None]:
    """Render setup may set SDL_VIDEODRIVER / MUJOCO_GL for the process; keep them out of later tests."""
    names = ("SDL_VIDEODRIVER", "MUJOCO_GL")
    before = {name: os.environ.get(name) for name in names}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def check_frame(frame: np.ndarray) -> None:
    assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.shape[0] > 0 and frame.shape[1] > 0
    assert frame.min() < frame.max()  # not a blank image


def random_masked(obs: dict, rng: np.random.Generator) -> dict:
    return {a: int(rng.choice(np.flatnonzero(o["action_mask"]))) for a, o in obs.items()}


# ---- MPE ----
def test_mpe_frames(restore_environ):
    pytest.importorskip("mpe2")
    from harl_rllib.envs.mpe import MPETeamEnv

    env = MPETeamEnv({"task": "simple_spread_v3", "render_mode": "rgb_array"})
    env.reset(seed=0)
    first = env.render()
    check_frame(first)
    rng = np.random.default_rng(0)
    frames = [first]
    for _ in range(3):
        env.step({a: int(rng.integers(5)) for a in env.possible_agents})
        frames.append(env.render())
    assert all(f.shape == first.shape and f.dtype == np.uint8 for f in frames)
    assert not np.array_equal(frames[0], frames[-1])  # the agents moved


def test_mpe_render_needs_render_mode():
    pytest.importorskip("mpe2")
    from harl_rllib.envs.mpe import MPETeamEnv

    env = MPETeamEnv({"task": "simple_spread_v3"})
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="render_mode='rgb_array'"):
        env.render()


# ---- SMAX ----
@pytest.fixture(scope="module")
def smax_env():
    pytest.importorskip("jaxmarl")
    from harl_rllib.envs.smax import SMAXTeamEnv

    return SMAXTeamEnv({"task": "3m", "max_steps": 40})  # test_smax.py's config: its compile is cached


def test_smax_frames(smax_env):
    obs, _ = smax_env.reset(seed=0)
    frames = [smax_env.render()]
    check_frame(frames[0])
    rng = np.random.default_rng(0)
    for _ in range(4):
        obs, _, term, trunc, _ = smax_env.step(random_masked(obs, rng))
        frames.append(smax_env.render())
        assert not (term["__all__"] or trunc["__all__"])
    assert all(f.shape == frames[0].shape and f.dtype == np.uint8 for f in frames)
    for before, after in zip(frames, frames[1:], strict=False):
        assert not np.array_equal(before, after)
    assert frames[0].shape[:2] == smax_env._figure.size


def test_smax_figure_draws_deaths_and_attacks(smax_env):
    """A hand-made battle: a dead unit and attacks both ways draw without error, same size;
    jaxmarl's attack encoding (ally: m + k → enemy k; enemy: m + k → ally n - 1 - k) is decoded."""
    smax_env.reset(seed=0)
    smax_env.render()  # makes the env's figure
    figure = smax_env._figure
    m = figure.m  # 5: four moves and stop
    units = {
        "unit_positions": np.array([[10, 16], [10, 18], [10, 20], [13, 16], [13, 18], [13, 20]], np.float32),
        "unit_alive": np.array([True, True, False, True, True, True]),
        "unit_teams": np.array([0, 0, 0, 1, 1, 1], np.float32),
        "unit_health": np.array([45, 20, 0, 45, 10, 45], np.float32),
        "unit_types": np.zeros(6, np.uint8),
        "prev_attack_actions": np.array([m + 1, 0, m, m + 2, 0, 0], np.int32),
        "step": 3,
    }
    pos, alive, types = units["unit_positions"], units["unit_alive"], units["unit_types"].astype(int)
    attacks = list(figure._attacks(units["prev_attack_actions"], pos, alive, types))
    assert [(int(i), int(j)) for i, j, _ in attacks] == [(0, 4), (3, 0)]  # the dead unit 2's attack is dropped
    frame = figure.draw(units)
    check_frame(frame)
    assert frame.shape[:2] == figure.size


def test_smax_vector_env_render_env():
    pytest.importorskip("jaxmarl")
    from harl_rllib.envs.smax import SMAXTeamEnv

    vec = SMAXTeamEnv.make_vector_env({"task": "3m", "max_steps": 40}, 2)
    obs, _ = vec.reset(seed=0)
    rng = np.random.default_rng(1)
    vec.step([random_masked(o, rng) for o in obs])
    first, second = vec.render_env(0), vec.render_env(1)
    check_frame(second)
    assert first.shape == second.shape
    assert not np.array_equal(first, second)  # two battles, two random plays
    assert len(vec.render()) == 2
    with pytest.raises(IndexError):
        vec.render_env(2)


# ---- MaMuJoCo ----
def test_mamujoco_frames(restore_environ):
    pytest.importorskip("gymnasium_robotics")
    from harl_rllib.envs.mamujoco import MAMuJoCoTeamEnv, MuJoCoGLError

    env = MAMuJoCoTeamEnv({"task": "HalfCheetah-2x3", "render_mode": "rgb_array", "width": 96, "height": 64})
    env.reset(seed=0)
    try:
        first = env.render()
    except MuJoCoGLError as e:  # only when this machine's OpenGL really fails
        pytest.skip(f"MuJoCo cannot render here: {e}")
    check_frame(first)
    assert first.shape == (64, 96, 3)
    rng = np.random.default_rng(0)
    for _ in range(10):
        env.step({a: rng.uniform(-1, 1, space.shape) for a, space in env.action_spaces.items()})
    last = env.render()
    assert last.shape == first.shape and not np.array_equal(first, last)
    env.close()


def test_mamujoco_render_errors():
    pytest.importorskip("gymnasium_robotics")
    from harl_rllib.envs.mamujoco import MAMuJoCoTeamEnv, MuJoCoGLError

    env = MAMuJoCoTeamEnv({"task": "HalfCheetah-2x3"})
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="render_mode='rgb_array'"):
        env.render()
    env.render_mode, env._gl_backend = "rgb_array", None  # as on a machine with no GL library
    with pytest.raises(MuJoCoGLError, match="MUJOCO_GL=egl.*apt install libegl1.*apt install libosmesa6"):
        env.render()
