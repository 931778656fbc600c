"""jaxmarl's scripted SMAX policy playing our side of a map: a yardstick for learned win rates.

The enemy in every SMAX battle is jaxmarl's heuristic (attack the closest enemy in range and keep
attacking it until it dies, else advance). Giving our side the same script shows how far a map is
from even: on a mirror map it wins about half its battles, and a learned policy that wins no more
than the script has learned nothing the enemy does not already do. Used in docs/RESULTS.md §5:

    python benchmarks/smax_heuristic.py --tasks 3m,2s3z,3s5z,5m_vs_6m --battles 500

A battle is won as our SMAX env counts it (`harl_rllib.envs.smax.battle_outcome`: every enemy dead
and an ally alive when it ends, at most max_steps + 1 steps). The return is the team reward summed over the battle.
"""

from __future__ import annotations

import argparse


def play(task: str, battles: int, attack_mode: str, seed: int) -> tuple[float, float]:
    """Mean team return and win rate of `battles` scripted battles, all in one jitted call."""
    import jax
    import jax.numpy as jnp
    from jaxmarl.environments.smax import map_name_to_scenario
    from jaxmarl.environments.smax.heuristic_enemy import (
        create_heuristic_policy,
        get_heuristic_policy_initial_state,
    )
    from jaxmarl.environments.smax.heuristic_enemy_smax_env import HeuristicEnemySMAX

    from harl_rllib.envs.smax import battle_outcome

    env = HeuristicEnemySMAX(scenario=map_name_to_scenario(task))
    policy = jax.vmap(create_heuristic_policy(env._env, 0, shoot=True, attack_mode=attack_mode))
    n = env.num_agents

    def battle(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        key, reset_key = jax.random.split(key)
        obs, state = env.reset(reset_key)
        policy_state = jax.tree.map(lambda x: jnp.stack([x] * n), get_heuristic_policy_initial_state())

        def step(carry, _):
            key, obs, state, policy_state, done, ret, won = carry
            key, act_key, step_key = jax.random.split(key, 3)
            own = jnp.stack([obs[a] for a in env.agents])
            acts, next_policy_state = policy(jax.random.split(act_key, n), policy_state, own)
            actions = {a: acts[i] for i, a in enumerate(env.agents)}
            next_obs, next_state, rewards, dones, _ = env.step_env(step_key, state, actions)
            ends_now = ~done & dones["__all__"]
            win, _ = battle_outcome(next_state.state.unit_alive, env.num_allies)
            ret = ret + jnp.where(done, 0.0, rewards[env.agents[0]])
            won = won | (ends_now & win)
            carry = (key, next_obs, next_state, next_policy_state, done | dones["__all__"], ret, won)
            return carry, None

        carry = (key, obs, state, policy_state, jnp.array(False), jnp.array(0.0), jnp.array(False))
        carry, _ = jax.lax.scan(step, carry, None, length=env.max_steps + 2)
        return carry[5], carry[6]

    returns, wins = jax.jit(jax.vmap(battle))(jax.random.split(jax.random.PRNGKey(seed), battles))
    return float(returns.mean()), float(wins.mean())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="3m,2s3z,3s5z,5m_vs_6m", help="comma-separated SMAX maps")
    p.add_argument("--battles", type=int, default=500, help="battles per map")
    p.add_argument("--attack-mode", choices=("closest", "random"), default="closest", help="our side's targeting")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.battles <= 0:
        p.error("--battles must be positive")
    print(f"| map | battles | team return | win rate |  (our side: jaxmarl's heuristic, {args.attack_mode})")
    print("|---|---|---|---|")
    for task in args.tasks.split(","):
        ret, win = play(task, args.battles, args.attack_mode, args.seed)
        print(f"| {task} | {args.battles} | {ret:.2f} | {win:.3f} |")


if __name__ == "__main__":
    main()
