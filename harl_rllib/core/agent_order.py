"""Env-to-module connector piece: a fixed agent order in every forward pass, so that a seed
repeats a run.

RLlib's env-to-module pipeline collects each step's per-agent data under
`(episode id, agent id, module id)` keys in the order of
`MultiAgentEpisode.get_agents_to_act()`, which is a Python `set`. A set of strings iterates
in an order that depends on the interpreter's hash seed (`PYTHONHASHSEED`, random per
process), and that order decides the order of the modules in the batch, of the rows inside a
shared module, and so the order in which action sampling and exploration noise draw from
torch's RNG. With `debugging(seed=...)` two runs of the same config then sampled different
actions from the first step on. This piece, inserted just before RLlib's
`AgentToModuleMapping`, sorts those keys by (episode position, agent id).
"""

from __future__ import annotations

from typing import Any

from ray.rllib.connectors.connector_v2 import ConnectorV2


class SortAgentsInBatch(ConnectorV2):
    """Order every per-agent column by (episode position in `episodes`, agent id)."""

    def __call__(self, *, rl_module, batch: dict[str, Any], episodes: list, explore=None, shared_data=None, **kwargs):
        position = {ep.id_: i for i, ep in enumerate(episodes)}

        def key(item: tuple) -> tuple:
            eps_id, *rest = item[0]
            return (position.get(eps_id, len(position)), *(str(x) for x in rest))

        for column, data in batch.items():
            if isinstance(data, dict) and data and all(isinstance(k, tuple) for k in data):
                batch[column] = dict(sorted(data.items(), key=key))
        return batch
