"""The cluster configs pass Ray's own checks, and HAPPO trains on a real multi-node Ray cluster.

Why: a cluster YAML is only exercised by `ray up` against a cloud; Ray's offline validation
(the schema and defaults `ray up` applies first) catches typos and wrong fields here. The
multi-node run checks that nothing in harl_rllib assumes one machine (env runners on other
nodes than the driver and learner).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import harl_rllib

from conftest import small_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_DIR = ROOT / "cluster"


def _prepared(name: str) -> dict[str, Any]:
    """The YAML as `ray up` sees it before talking to any cloud: defaults filled in, validated."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load((CLUSTER_DIR / name).read_text()))
    validate_config(config)
    return config


@pytest.mark.parametrize("name", ["config.yaml", "local.yaml"])
def test_cluster_yaml_passes_ray_validation_and_installs_the_project(name):
    config = _prepared(name)
    assert config["file_mounts"] == {"~/harl_rllib": "."}
    assert (ROOT / "setup.py").exists() and (CLUSTER_DIR / "install_sc2.sh").exists()
    for commands in (config["head_setup_commands"], config["worker_setup_commands"]):
        joined = "\n".join(commands)
        assert "https://download.pytorch.org/whl/cpu" in joined
        assert 'pip install -e "$HOME/harl_rllib[all]"' in joined
        assert "bash ~/harl_rllib/cluster/install_sc2.sh" in joined
        # torch before the project (so pip does not pull the CUDA build), SC2 after it.
        order = [next(i for i, c in enumerate(commands) if key in c) for key in ("whl/cpu", "-e ", "install_sc2")]
        assert order == sorted(order)


def test_aws_config_node_types():
    config = _prepared("config.yaml")
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    assert config["head_node_type"] == "head" and set(types) == {"head", "cpu_worker", "gpu_learner"}
    assert types["cpu_worker"]["max_workers"] >= 1 and types["gpu_learner"]["min_workers"] == 0
    assert sum(t["min_workers"] for t in types.values()) <= config["max_workers"]
    assert any("boto3" in c for c in config["head_setup_commands"])


def test_local_config_uses_the_listed_machines():
    config = _prepared("local.yaml")
    provider = config["provider"]
    assert provider["type"] == "local" and provider["head_ip"] not in provider["worker_ips"]
    (node_type,) = config["available_node_types"].values()
    assert node_type["min_workers"] == node_type["max_workers"] == len(provider["worker_ips"])


def test_ray_validation_rejects_a_wrong_field():
    """The check above has teeth: Ray's schema refuses unknown keys."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((CLUSTER_DIR / "config.yaml").read_text())
    bad = copy.deepcopy(raw)
    bad["available_node_types"]["cpu_worker"]["max_worker"] = 3  # typo of max_workers
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(bad))


@pytest.fixture
def ray_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real Ray cluster on this machine: a head and two worker nodes, 1 CPU each.

    Shuts down the session's local Ray first: conftest restarts it for later tests that use
    `ray_session`, and Tune's registry is refilled for the others. Ray's temp dir is a private
    one, so the `ray_current_cluster` file this writes cannot make someone else's plain
    `ray.init()` on this machine join our test cluster.
    """
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    temp_dir = tempfile.mkdtemp(prefix="harl_ray_")  # short: Ray's socket paths must stay < 108 chars
    monkeypatch.setenv("RAY_TMPDIR", temp_dir)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        harl_rllib.register()  # the new cluster's registry is empty
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        harl_rllib.register()  # Ray is down: the names wait in the driver for later tests and the next ray.init


def test_happo_env_runners_on_two_nodes(ray_cluster):
    import ray

    assert len([n for n in ray.nodes() if n["Alive"]]) == 3
    config = small_config(batch=200, num_epochs=1, critic_epoch=1).env_runners(
        num_env_runners=2, num_envs_per_env_runner=1
    )
    algo = config.build_algo()
    try:
        nodes = algo.env_runner_group.foreach_env_runner(
            lambda runner: ray.get_runtime_context().get_node_id(), local_env_runner=False
        )
        # One CPU per node and one per env runner: the two runners cannot share a node.
        assert len(nodes) == 2 and len(set(nodes)) == 2
        steps = [algo.train()["env_runners"]["num_env_steps_sampled_lifetime"] for _ in range(2)]
        assert steps[0] >= 200 and steps[1] >= steps[0] + 200
    finally:
        algo.stop()


def test_aws_nodes_join_a_group_open_to_ssh_from_one_address_and_to_each_other(tmp_path):
    """config.yaml names one security group for every node; cluster/security_group.sh creates it
    with SSH from the user's address only and all traffic between its members. The AWS CLI is
    a stand-in here (no cloud access): a script that answers the calls and records them."""
    import os
    import subprocess

    config = _prepared("config.yaml")
    assert config["provider"]["security_group"] == {"GroupName": "harl-rllib-nodes"}
    for node_type in config["available_node_types"].values():
        assert "SecurityGroupIds" not in node_type["node_config"]  # so each node gets the named group
    assert not any("dashboard-host" in c for c in config["head_start_ray_commands"])  # dashboard on localhost

    calls = tmp_path / "aws_calls.txt"
    fake_aws = tmp_path / "bin" / "aws"
    fake_aws.parent.mkdir()
    fake_aws.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {calls}\n'
        'case "$2" in\n'
        "  describe-vpcs) echo vpc-123 ;;\n"
        "  describe-security-groups) echo None ;;\n"
        "  create-security-group) echo sg-abc ;;\n"
        "esac\n"
    )
    fake_aws.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_aws.parent}:{os.environ['PATH']}", "MY_IP": "203.0.113.7"}
    out = subprocess.run(["bash", str(CLUSTER_DIR / "security_group.sh")], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = calls.read_text().splitlines()
    assert any("create-security-group" in x and "--group-name harl-rllib-nodes" in x for x in lines)
    (ingress,) = [x for x in lines if "authorize-security-group-ingress" in x]
    assert "--region us-west-2" in ingress and "--group-id sg-abc" in ingress
    assert "IpProtocol=tcp,FromPort=22,ToPort=22,IpRanges=[{CidrIp=203.0.113.7/32" in ingress
    assert "IpProtocol=-1,UserIdGroupPairs=[{GroupId=sg-abc" in ingress
    assert "0.0.0.0/0" not in ingress
