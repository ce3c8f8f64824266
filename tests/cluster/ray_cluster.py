"""A local Ray cluster with engine workers, for the cluster tests."""

from __future__ import annotations


def start_cluster(**overrides):
    """A local Ray cluster (127.0.0.1 only) with two engine workers of one torch thread each."""
    import ray

    from streamer.cluster import ClusterConfig, ClusterEngine
    from streamer.cluster.local import LocalCluster

    local = LocalCluster(num_cpus=4)
    try:
        ray.init(address=local.address, namespace="streamer", log_to_driver=False)
        engine = ClusterEngine(ClusterConfig(workers=2, threads_per_worker=1, **overrides))
    except BaseException:
        ray.shutdown()
        local.close()
        raise
    return local, engine
