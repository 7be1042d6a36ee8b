"""train.ray_launch: the torchrun variables each Ray-placed learner gets (the group itself is trained in
tests/e2e/test_grpo_ray.py), and which configs launch learners."""

from types import SimpleNamespace

from posttrain.train.ray_launch import learner_envs, wants_ray_learners


def test_learner_envs_rank_the_learners_and_meet_at_learner_0s_node():
    envs = learner_envs(["10.0.0.2", "10.0.0.2", "10.0.0.3"], 29511, gpus=0)
    assert [e["RANK"] for e in envs] == ["0", "1", "2"] and {e["WORLD_SIZE"] for e in envs} == {"3"}
    assert {(e["MASTER_ADDR"], e["MASTER_PORT"]) for e in envs} == {("10.0.0.2", "29511")}
    assert [e["LOCAL_RANK"] for e in envs] == ["0", "1", "0"]  # on CPU: the learner's place on its node
    assert [e["LOCAL_WORLD_SIZE"] for e in envs] == ["2", "2", "1"]
    assert all(e["POSTTRAIN_RAY_LEARNER"] == "1" and "GLOO_SOCKET_IFNAME" not in e for e in envs)
    on_gpus = learner_envs(["10.0.0.2", "10.0.0.2"], 29511, gpus=1)
    assert [e["LOCAL_RANK"] for e in on_gpus] == ["0", "0"]  # each sees only its own GPU (CUDA_VISIBLE_DEVICES)


def test_a_loopback_cluster_makes_gloo_use_loopback(monkeypatch):
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    assert {e["GLOO_SOCKET_IFNAME"] for e in learner_envs(["127.0.0.1"] * 2, 29511, gpus=0)} == {"lo"}


def test_only_ray_runs_with_learners_launch_and_never_from_a_learner(monkeypatch):
    monkeypatch.delenv("POSTTRAIN_RAY_LEARNER", raising=False)
    assert wants_ray_learners(SimpleNamespace(ray=True, ray_learners=2))
    assert not wants_ray_learners(SimpleNamespace(ray=True, ray_learners=0))
    assert not wants_ray_learners(SimpleNamespace(ray=False, ray_learners=2))
    assert not wants_ray_learners(SimpleNamespace(output_dir="runs/sft"))  # a stage without Ray options
    monkeypatch.setenv("POSTTRAIN_RAY_LEARNER", "1")
    assert not wants_ray_learners(SimpleNamespace(ray=True, ray_learners=2))
