"""The learner as a torch.distributed group that Ray places: `ray=true ray_learners=N`.

    posttrain grpo ... ray=true ray_learners=2 ray_learner_gpus=1 ray_workers=2

Instead of `torchrun` starting N processes on one node (or on each node), the command joins a Ray
cluster, reserves a placement group of N learner bundles ({CPU: ray_learner_cpus, GPU:
ray_learner_gpus} each, PACK: on as few nodes as fit), and starts one actor in each. The actors get
the environment torchrun would give them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR of learner 0's
node, a free MASTER_PORT there) and run the same stage on the same config: each joins the process
group (gloo on CPU, NCCL on GPU), trains its share of the batch with FSDP2, and samples its prompts
on its own `ray_workers` rollout actors (rollout/ray_backend.py), exactly as a torchrun process does.
So a run on N learners takes the steps of N torchrun processes, which take those of one process with
the combined batch (tests/e2e/test_grpo_ray.py).

Ray does the placement and starts the processes; torch.distributed does every collective. The
learners read the data and write output_dir on their nodes, so on more than one node those paths must
be on a shared file system (as for torchrun across nodes). When one learner fails, the others are
stopped and its error is raised here.
"""

from __future__ import annotations

import contextlib
import os
import socket

from posttrain.ranks import RAY_LEARNER_ENV, in_ray_learner

def wants_ray_learners(config) -> bool:
    """Whether `config` asks for a Ray-placed learner group and this process is not one of its learners."""
    return bool(getattr(config, "ray", False)) and getattr(config, "ray_learners", 0) > 0 and not in_ray_learner()


class Learner:
    """One learner process; `ray.remote` is applied where the actors are made."""

    def node_ip(self) -> str:
        import ray

        return ray.util.get_node_ip_address()

    def free_port(self) -> int:
        with socket.socket() as s:
            s.bind(("", 0))
            return s.getsockname()[1]

    def run(self, env: dict, cwd: str, stage):
        """`stage()` as rank env["RANK"] of the group; rank 0 returns its result."""
        os.environ.update(env)
        if os.path.isdir(cwd):  # relative paths in the config mean what they mean to the command
            os.chdir(cwd)
        result = stage()
        return result if env["RANK"] == "0" else None


def learner_envs(ips: list[str], port: int, gpus: float) -> list[dict]:
    """torchrun's variables for each learner; learner 0's node is the rendezvous. A learner with a GPU
    sees only its own (Ray sets CUDA_VISIBLE_DEVICES), so its LOCAL_RANK is 0."""
    envs, seen = [], {}
    for rank, ip in enumerate(ips):
        local = seen.get(ip, 0)
        seen[ip] = local + 1
        envs.append({"RANK": str(rank), "WORLD_SIZE": str(len(ips)), "LOCAL_RANK": "0" if gpus else str(local),
                     "MASTER_ADDR": ips[0], "MASTER_PORT": str(port), RAY_LEARNER_ENV: "1"})
    for env in envs:
        env["LOCAL_WORLD_SIZE"] = str(seen[ips[int(env["RANK"])]])
        if ips[0].startswith("127.") and "GLOO_SOCKET_IFNAME" not in os.environ:
            env["GLOO_SOCKET_IFNAME"] = "lo"  # a loopback-only cluster: gloo's own interface lookup would find none
    return envs


def run_on_learners(config, stage):
    """Run `stage` (a picklable callable, the stage on `config`) on `config.ray_learners` Ray actors
    as one torch.distributed group; returns learner 0's result."""
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from posttrain.errors import UserError
    from posttrain.rollout.ray_backend import connect, get_results, require_ray

    ray = require_ray()
    started = connect(ray, config.ray_address)
    count, cpus, gpus = config.ray_learners, float(config.ray_learner_cpus), float(config.ray_learner_gpus)
    bundle = {"CPU": cpus} | ({"GPU": gpus} if gpus else {})
    group = placement_group([dict(bundle) for _ in range(count)], strategy="PACK")
    actors = []
    try:
        try:
            ray.get(group.ready(), timeout=config.ray_timeout)
        except ray.exceptions.GetTimeoutError:
            raise UserError(f"ray: {count} learners of {bundle} each did not fit the cluster within {config.ray_timeout:g} s; "
                            f"it has {ray.available_resources()}: lower ray_learners / ray_learner_cpus / ray_learner_gpus, "
                            "add nodes, or raise ray_timeout") from None
        remote = ray.remote(Learner)
        actors = [remote.options(num_cpus=cpus, num_gpus=gpus, scheduling_strategy=PlacementGroupSchedulingStrategy(
            placement_group=group, placement_group_bundle_index=i)).remote() for i in range(count)]
        ips = get_results(ray, [actor.node_ip.remote() for actor in actors])
        port = get_results(ray, [actors[0].free_port.remote()])[0]
        pending = [actor.run.remote(env, os.getcwd(), stage) for actor, env in zip(actors, learner_envs(ips, port, gpus))]
        first = pending[0]
        results = {}
        while pending:  # the first failure ends the run (its peers would wait at a collective forever)
            done, pending = ray.wait(pending, num_returns=1)
            results[done[0].hex()] = get_results(ray, done)[0]
        return results[first.hex()]
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        with contextlib.suppress(Exception):
            remove_placement_group(group)
            if started:
                ray.shutdown()
