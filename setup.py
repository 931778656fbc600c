from setuptools import find_packages, setup

MPE = ["mpe2>=1.1", "pettingzoo>=1.25"]
SMAX = ["jaxmarl>=0.2"]
MAMUJOCO = ["gymnasium-robotics>=1.4", "mujoco>=3"]
WANDB = ["wandb>=0.31"]
RESULTS = ["rliable>=1.2", "pandas<3"]

setup(
    name="harl_rllib",
    version="0.1.0",
    description="Heterogeneous-Agent RL (HAPPO, HATRPO, HAA2C, MAPPO) on Ray RLlib's new API stack",
    packages=find_packages(include=["harl_rllib", "harl_rllib.*"]),
    python_requires=">=3.10",
    install_requires=[
        "ray[rllib,tune]==2.60.0",
        "torch>=2.2",
        "gymnasium",
        "numpy",
        "pyyaml",
        "dm-tree",
        "matplotlib",  # train.py's curves.png, the sweep figure
        "imageio",  # evaluate.py --render (GIF; MP4 with imageio-ffmpeg)
    ],
    extras_require={
        "mpe": MPE,
        "smax": SMAX,
        "mamujoco": MAMUJOCO,
        # StarCraft II itself is a separate download: see cluster/install_sc2.sh.
        # (PyPI's `smac` is SMAC3, an unrelated optimizer: never depend on it.)
        "smac": [
            "smac @ git+https://github.com/oxwhirl/smac.git",
            "smacv2 @ git+https://github.com/oxwhirl/smacv2.git",
        ],
        "wandb": WANDB,
        # benchmarks/reproduce.py statistics (rliable pins arch<8, which fails to import under pandas 3)
        "results": RESULTS,
        "all": MPE + SMAX + MAMUJOCO + WANDB,
        "test": MPE + SMAX + MAMUJOCO + WANDB + RESULTS + ["pytest>=8", "pytest-xdist>=3.5", "ruff"],
    },
)
