from setuptools import find_packages, setup

setup(
    name="harl_rllib",
    version="0.1.0",
    description="Heterogeneous-Agent RL (HAPPO, MAPPO, ...) on Ray RLlib's new API stack",
    packages=find_packages(include=["harl_rllib", "harl_rllib.*"]),
    python_requires=">=3.10",
    install_requires=[
        "ray[rllib,tune]==2.60.0",
        "torch>=2.2",
        "gymnasium",
        "numpy",
        "pyyaml",
        "dm-tree",
    ],
    extras_require={
        "mpe": ["mpe2>=1.1", "pettingzoo>=1.25"],
        "test": ["mpe2>=1.1", "pettingzoo>=1.25", "pytest>=8", "ruff"],
    },
)
