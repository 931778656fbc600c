"""Training throughput vs the raw env's step rate, as a ratio measured in one run.

    python benchmarks/throughput.py                      # HAPPO, MPE simple_spread (3 agents)
    python benchmarks/throughput.py --algo mappo --iters 8
    python benchmarks/throughput.py --env smax --task 3m --envs-per-runner 16
    python benchmarks/throughput.py --env mamujoco --task HalfCheetah-2x3
    python benchmarks/throughput.py --algo hatd3 --env mamujoco --task HalfCheetah-2x3 --envs-per-runner 10

    python benchmarks/throughput.py --n-agents 12        # MPE simple_spread with N = 12 agents
    python benchmarks/throughput.py --env smax --task 3m --envs-per-runner 16 --recurrent   # GRU actors
    python benchmarks/throughput.py --num-gpus-per-learner 1 --sampling team   # the learner on a GPU
    python benchmarks/throughput.py --num-learners 2 --sampling team           # two data-parallel learners

Prints the raw random-action rate (joint env steps/s: of the bare mpe2 env for MPE,
and of harl_rllib's adapter for every env; for SMAX also of one batched call over
all of a runner's envs), the training rate (env steps sampled and trained per second
of wall time, after one warm-up iteration) on each sampling path (`--sampling both`:
team rollouts and RLlib's episodes, one after the other in this run), their ratios to
the raw rate, and the split of an iteration into sampling and learning.
Goals (see README): HAPPO on MPE ≥ 0.7 × raw on the team path, and ≥ 1.5 × the reference
implementation (≈340 env steps/s on this 2-core machine class).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def raw_rate(task: str, seconds: float, n_agents: int | None = None) -> float:
    """Joint steps/s of the bare mpe2 parallel env with random actions (resets included)."""
    import importlib

    env = importlib.import_module(f"mpe2.{task}").parallel_env(max_cycles=25, **({"N": n_agents} if n_agents else {}))
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if not env.agents:
            env.reset()
        env.step({a: env.action_space(a).sample() for a in env.agents})
        steps += 1
    return steps / (time.perf_counter() - start)


def adapter_rate(env_name: str, task: str, seconds: float, n_agents: int | None = None) -> float:
    """Joint steps/s of harl_rllib's team env with random available actions (resets included)."""
    import numpy as np

    from harl_rllib.envs.registry import ENVS

    env = ENVS[env_name][0]({"task": task, **({"N": n_agents} if n_agents else {})})
    rng = np.random.default_rng(0)

    def act(obs):
        out = {}
        for a, o in obs.items():
            space = env.action_spaces[a]
            if isinstance(o, dict) and "action_mask" in o:
                out[a] = int(rng.choice(np.flatnonzero(o["action_mask"])))
            else:
                out[a] = space.sample()
        return out

    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(act(obs))  # compile/warm-up, not timed
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        obs, _, term, trunc, _ = env.step(act(obs))
        steps += 1
        if term["__all__"] or trunc["__all__"]:
            obs, _ = env.reset()
    env.close()
    return steps / (time.perf_counter() - start)


def smax_batched_rate(task: str, envs: int, seconds: float) -> float:
    """Joint env steps/s of SMAX's engine stepping `envs` battles in one jitted call."""
    import numpy as np

    from harl_rllib.envs.smax import SMAXTeamEnv

    engine = SMAXTeamEnv({"task": task}, num_envs=envs).engine
    engine.reset(0)
    actions, no_reset = np.full((envs, engine.n), 4, np.int32), np.zeros(envs, bool)  # "stop" is always available
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        engine.step(actions, no_reset)
        calls += 1
    return calls * envs / (time.perf_counter() - start)


def train_rate(
    algo_name: str,
    env: str,
    task: str,
    iters: int,
    runners: int,
    envs: int,
    threads: int,
    continuous: bool = False,
    sampling: str = "auto",
    n_agents: int | None = None,
    recurrent: bool = False,
    num_learners: int = 0,
    num_gpus_per_learner: float = 0,
) -> dict:
    import ray
    import torch

    import harl_rllib
    from harl_rllib.run import build_config

    torch.set_num_threads(threads)
    config = build_config(
        algo=algo_name,
        env=env,
        task=task,
        num_env_runners=runners,
        envs_per_runner=envs,
        continuous_actions=continuous,
        overrides={"sampling": sampling, **({"use_recurrent_policy": True} if recurrent else {})},
    )
    if n_agents:
        config.env_config = {**config.env_config, "N": n_agents}
    config.learners(num_learners=num_learners, num_gpus_per_learner=num_gpus_per_learner)
    if num_learners:
        config.learners(num_cpus_per_learner=0 if num_gpus_per_learner else 1)
    config.validate()
    ray.init(address="local", num_cpus=max(2, num_learners + runners), include_dashboard=False, log_to_driver=False)
    harl_rllib.register()  # Tune's registry lives in the running Ray (a second run in this process)
    try:
        algo = config.build_algo()
        found = algo.learner_group.foreach_learner(lambda learner: str(learner._device))
        devices = [d.get() if hasattr(d, "get") else d for d in found]
        print(f"learner devices: {devices}", flush=True)
        algo.train()  # warm-up (off-policy: the random-action warm-up steps, no update)
        steps0 = algo.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime"))
        start = time.perf_counter()
        sample_t = learn_t = 0.0
        for _ in range(iters):
            r = algo.train()
            sample_t += r["timers"]["iteration_sample_s"]
            learn_t += r["timers"]["iteration_learn_s"]
        wall = time.perf_counter() - start
        steps = r["env_runners"]["num_env_steps_sampled_lifetime"] - steps0
        algo.stop()
    finally:
        ray.shutdown()
    return {
        "rate": steps / wall,
        "sample_s": sample_t / iters,
        "learn_s": learn_t / iters,
        "steps": steps,
        "sampling": r["sampling"],
        "devices": devices,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", default="happo")
    p.add_argument("--env", default="mpe")
    p.add_argument("--task", default="simple_spread_v3")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--num-env-runners", type=int, default=0)
    p.add_argument("--envs-per-runner", type=int, default=20)
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--raw-seconds", type=float, default=5.0)
    p.add_argument("--continuous-actions", action="store_true", help="MPE with Box actions (HADDPG/HATD3)")
    p.add_argument("--sampling", default="both", help="both | auto | team | episodes")
    p.add_argument("--n-agents", type=int, default=None, help="MPE simple_spread's N (default 3)")
    p.add_argument("--recurrent", action="store_true", help="GRU actors and critic (use_recurrent_policy)")
    p.add_argument("--num-learners", type=int, default=0, help="remote learners (0: one, in the driver)")
    p.add_argument("--num-gpus-per-learner", type=float, default=0, help="1: every learner on a GPU")
    a = p.parse_args()
    raws = {}
    if a.env == "mpe":
        raws[f"bare mpe2 {a.task}"] = raw_rate(a.task, a.raw_seconds, a.n_agents)
    raws[f"harl_rllib {a.env} {a.task} adapter"] = adapter_rate(a.env, a.task, a.raw_seconds, a.n_agents)
    if a.env == "smax":
        raws[f"SMAX {a.task}, {a.envs_per_runner} envs in one call"] = smax_batched_rate(
            a.task, a.envs_per_runner, a.raw_seconds
        )
    raw = next(iter(raws.values()))
    paths = ["team", "episodes"] if a.sampling == "both" else [a.sampling]
    runs = {
        path: train_rate(
            a.algo,
            a.env,
            a.task,
            a.iters,
            a.num_env_runners,
            a.envs_per_runner,
            a.torch_threads,
            a.continuous_actions,
            sampling=path,
            n_agents=a.n_agents,
            recurrent=a.recurrent,
            num_learners=a.num_learners,
            num_gpus_per_learner=a.num_gpus_per_learner,
        )
        for path in paths
    }
    for name, rate in raws.items():
        print(f"raw env ({name}, random actions): {rate:8.0f} env steps/s")
    for t in runs.values():
        print(
            f"{a.algo}{' (GRU)' if a.recurrent else ''} training, sampling {t['sampling']!r} "
            f"({a.num_env_runners} remote runners, "
            f"{a.envs_per_runner} envs each): {t['rate']:8.0f} env steps/s  ({t['steps']} steps in {a.iters} "
            f"iterations; per iteration: sampling {t['sample_s']:.2f}s, learning {t['learn_s']:.2f}s; "
            f"learners on {', '.join(t['devices'])})"
        )
        print(f"  ratio training / raw ({next(iter(raws))}): {t['rate'] / raw:.3f}")
        if a.env == "mpe" and a.task == "simple_spread_v3" and not a.n_agents:
            print(f"  ratio training / reference HAPPO (340 env steps/s): {t['rate'] / 340:.2f}  (goal >= 1.5)")
    if len(runs) == 2:
        print(f"ratio team / episodes: {runs['team']['rate'] / runs['episodes']['rate']:.2f}")


if __name__ == "__main__":
    main()
