"""Training throughput vs the raw env's step rate, as a ratio measured in one run.

    python benchmarks/throughput.py                      # HAPPO, MPE simple_spread (3 agents)
    python benchmarks/throughput.py --algo mappo --iters 8

Prints the raw mpe2 random-action rate (joint env steps/s), HAPPO's training rate
(env steps sampled and trained per second of wall time, after one warm-up
iteration), their ratio, and the split of an iteration into sampling and learning.
Goals (see README): ≥ 0.5 × raw, and ≥ 1.5 × the reference implementation
(≈340 env steps/s on this 2-core machine class).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def raw_rate(task: str, seconds: float) -> float:
    """Joint steps/s of the bare mpe2 parallel env with random actions (resets included)."""
    import importlib

    env = importlib.import_module(f"mpe2.{task}").parallel_env(max_cycles=25)
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if not env.agents:
            env.reset()
        env.step({a: env.action_space(a).sample() for a in env.agents})
        steps += 1
    return steps / (time.perf_counter() - start)


def train_rate(algo_name: str, task: str, iters: int, runners: int, envs: int, threads: int) -> dict:
    import ray
    import torch

    import harl_rllib  # noqa: F401
    from harl_rllib.run import build_config

    torch.set_num_threads(threads)
    config = build_config(algo=algo_name, env="mpe", task=task, num_env_runners=runners, envs_per_runner=envs)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        algo = config.build_algo()
        algo.train()  # warm-up
        steps0 = algo.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime"))
        start = time.perf_counter()
        sample_t = learn_t = 0.0
        for _ in range(iters):
            r = algo.train()
            sample_t += r["timers"]["env_runner_sampling_timer"]
            learn_t += r["timers"]["learner_update_timer"]
        wall = time.perf_counter() - start
        steps = r["env_runners"]["num_env_steps_sampled_lifetime"] - steps0
        algo.stop()
    finally:
        ray.shutdown()
    return {"rate": steps / wall, "sample_s": sample_t / iters, "learn_s": learn_t / iters, "steps": steps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", default="happo")
    p.add_argument("--task", default="simple_spread_v3")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--num-env-runners", type=int, default=0)
    p.add_argument("--envs-per-runner", type=int, default=20)
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--raw-seconds", type=float, default=5.0)
    a = p.parse_args()
    raw = raw_rate(a.task, a.raw_seconds)
    t = train_rate(a.algo, a.task, a.iters, a.num_env_runners, a.envs_per_runner, a.torch_threads)
    print(f"raw env (mpe2 {a.task}, random actions): {raw:8.0f} env steps/s")
    print(
        f"{a.algo} training ({a.num_env_runners} remote runners, {a.envs_per_runner} envs each): "
        f"{t['rate']:8.0f} env steps/s  ({t['steps']} steps in {a.iters} iterations; "
        f"per iteration: sampling {t['sample_s']:.2f}s, learning {t['learn_s']:.2f}s)"
    )
    print(f"ratio training / raw: {t['rate'] / raw:.3f}  (goal >= 0.5)")
    print(f"ratio training / reference HAPPO (340 env steps/s): {t['rate'] / 340:.2f}  (goal >= 1.5)")


if __name__ == "__main__":
    main()
