"""The engine beyond one machine: sessions spread over engine workers on a Ray cluster.

    import streamer
    cluster = streamer.connect(workers=2)      # a local Ray cluster; "auto" or "ray://..." joins one
    session = cluster.session()                # the same surface as Engine.session()

Ray is an optional extra (`pip install 'streamer[cluster]'`); nothing here imports it until used.
"""

from streamer.cluster.engine import ClusterConfig, ClusterEngine, connect
from streamer.cluster.session import ClusterSession, Restore, WorkerLost

__all__ = ["ClusterConfig", "ClusterEngine", "ClusterSession", "Restore", "WorkerLost", "connect"]
