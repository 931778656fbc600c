"""The MPE adapter against mpe2 itself."""

from __future__ import annotations

import numpy as np
import pytest

from harl_rllib.envs.contract import STATE_KEY
from harl_rllib.envs.mpe import MPE_TASKS, MPETeamEnv


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("task", MPE_TASKS)
def test_global_state_is_mpe2s_state(task, continuous):
    """The adapter builds the state from the step's observations instead of calling mpe2's
    `state()` (which computes them again): it must equal `state()` at the reset, every step
    and the last step, whatever the scenario's agent order (simple_speaker_listener's is not
    sorted)."""
    env = MPETeamEnv({"task": task, "continuous_actions": continuous, "max_cycles": 6})
    for episode in range(2):
        obs, infos = env.reset(seed=episode)
        checked = 0
        while True:
            for a in env.possible_agents:
                np.testing.assert_array_equal(infos[a][STATE_KEY], env.env.state())
                assert infos[a][STATE_KEY].dtype == np.float32
            checked += 1
            actions = {a: env.action_spaces[a].sample() for a in env.possible_agents}
            obs, _, term, trunc, infos = env.step(actions)
            if term["__all__"] or trunc["__all__"]:
                for a in env.possible_agents:
                    np.testing.assert_array_equal(infos[a][STATE_KEY], env.env.state())
                break
        assert checked == 6
