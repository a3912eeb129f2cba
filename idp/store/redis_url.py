"""Redis URLs: a plain server, a Sentinel-watched master, or a Cluster.

The forms are those Flask-Limiter's storage (the ``limits`` package) understands, so one ``redis.url`` serves
both the key-value store and the rate-limit counters:

- ``redis://[:password@]host:port/db``, ``rediss://...`` (TLS), ``unix:///path/redis.sock?db=0``
- ``redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]``: the master that the Sentinels
  name ``service_name``, followed across fail-overs
- ``redis+cluster://[:password@]host:port[,host:port...]``: a Redis Cluster, found from any of these nodes
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

PLAIN_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


class RedisURLError(ValueError):
    """The URL is not one of the accepted forms; the message says which part is wrong."""


@dataclass(frozen=True)
class RedisTarget:
    kind: str  # "plain", "sentinel" or "cluster"
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    service_name: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @property
    def limiter_uri(self) -> str:
        """The URL for Flask-Limiter's storage. Its Sentinel storage reads the whole path as the service name, so
        the database number is taken off here and passed in :attr:`limiter_options`."""
        if self.kind != "sentinel" or self.db == 0:
            return self.url
        return self.url.rstrip("/").rsplit("/", 1)[0]

    @property
    def limiter_options(self) -> dict[str, int]:
        return {"db": self.db} if self.kind == "sentinel" and self.db else {}

    @property
    def where(self) -> str:
        """Where the store is, for messages: hosts and ports, never the password."""
        if self.kind == "plain":
            parts = urlsplit(self.url)
            return parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"
        nodes = ",".join(f"{host}:{port}" for host, port in self.nodes)
        return f"{nodes}/{self.service_name}" if self.kind == "sentinel" else nodes


def _nodes(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    nodes = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if not host:
            raise RedisURLError(f"{item!r} is not host:port")
        try:
            number = int(port) if port else default_port
        except ValueError:
            raise RedisURLError(f"{item!r}: the port is not a number") from None
        if not 1 <= number <= 65535:
            raise RedisURLError(f"{item!r}: the port is out of range")
        nodes.append((host.strip("[]"), number))
    return tuple(nodes)


def parse_redis_url(url: str) -> RedisTarget:
    scheme, _, rest = url.partition("://")
    if not rest:
        raise RedisURLError("must be a URL such as redis://127.0.0.1:6379/0")
    scheme = scheme.lower()
    if scheme in PLAIN_SCHEMES:
        return RedisTarget(kind="plain", url=url, tls=scheme == "rediss")
    if scheme not in SENTINEL_SCHEMES + CLUSTER_SCHEMES:
        raise RedisURLError(
            "must start with redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// (or be empty)"
        )
    # urlsplit cannot read "h1:1,h2:2" as a netloc port, so the user part and hosts are split here.
    parts = urlsplit("http://" + rest)
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, _, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) or None
    if not netloc:
        raise RedisURLError("names no host")
    tls = scheme.startswith("rediss")
    path = [segment for segment in parts.path.split("/") if segment]
    if scheme in SENTINEL_SCHEMES:
        if not path:
            raise RedisURLError("a Sentinel URL must name the service: redis+sentinel://host:26379/mymaster")
        if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            raise RedisURLError("a Sentinel URL's path is /service_name or /service_name/db")
        return RedisTarget(
            kind="sentinel",
            url=url,
            nodes=_nodes(netloc, 26379),
            service_name=path[0],
            db=int(path[1]) if len(path) == 2 else 0,
            username=username,
            password=password,
            tls=tls,
        )
    if path:
        raise RedisURLError("a Cluster URL has no path: Redis Cluster has only database 0")
    nodes = _nodes(netloc, 6379)
    return RedisTarget(kind="cluster", url=url, nodes=nodes, username=username, password=password, tls=tls)


def connect(target: RedisTarget, socket_timeout: float = 2, connect_timeout: float = 2):  # type: ignore[no-untyped-def]
    """A redis-py client for the target; connections are made lazily, so a Redis that is down does not stop the
    start (``/readyz`` reports it, and requests answer 503 until it is back)."""
    import redis
    from redis.cluster import ClusterNode, RedisCluster
    from redis.sentinel import Sentinel

    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout}
    if target.kind == "plain":
        return redis.Redis.from_url(target.url, health_check_interval=15, **timeouts)
    auth = {"username": target.username, "password": target.password}
    if target.kind == "sentinel":
        # As Flask-Limiter's Sentinel storage does: the URL's credentials go to the Sentinels and the master.
        sentinel = Sentinel(list(target.nodes), sentinel_kwargs={**timeouts, **auth}, **timeouts)
        return sentinel.master_for(target.service_name, db=target.db, ssl=target.tls, **auth)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes], ssl=target.tls, **auth, **timeouts
    )
