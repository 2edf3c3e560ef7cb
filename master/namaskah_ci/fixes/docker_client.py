"""DockerLatentWorker's worker container: no public hook labels it or puts it on the build's network.

Buildbot 4.3's `DockerLatentWorker` creates the worker container itself, with
a `docker.APIClient` from its private `_getDockerClient(client_args)`; no
setting adds labels to that container (Namaskah CI labels every container it
starts, so that the master can reap its leftovers), and its network comes only
from the operator's `hostconfig`, not from the per-build network a build's
start decides. Not filed upstream; reproduction: configure a
`DockerLatentWorker`, start a build, `docker inspect` its container: no label
but the image's, and no way to name one in the worker's settings.

`LabelledWorkerClientMixin` overrides `_getDockerClient` to wrap the stock
client so that the worker container gets `container_labels()` and
`build_network`; `raw_client()` is the stock client, for every other Docker
call. A mixin, not a patch: nothing to `apply()`; workers/docker/latent.py uses it.
"""

from __future__ import annotations

from typing import Any

from buildbot.worker.docker import DockerLatentWorker


class LabellingClient:
    """A docker.APIClient that adds this worker's labels (and its build's network) to its container."""

    def __init__(self, client: Any, labels: dict[str, str], network: str | None) -> None:
        self._client = client
        self._labels = labels
        self._network = network

    def create_host_config(self, **kwargs: Any) -> Any:
        if self._network:
            kwargs["network_mode"] = self._network
        return self._client.create_host_config(**kwargs)

    def create_container(self, image: str, command: Any = None, **kwargs: Any) -> Any:
        kwargs["labels"] = {**(kwargs.get("labels") or {}), **self._labels}
        return self._client.create_container(image, command, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class LabelledWorkerClientMixin:
    """Mix in before `DockerLatentWorker`: its worker container carries `container_labels()` and, when
    `build_network` is set, joins that network."""

    build_network: str | None  # the running build's network (None: the configured one)

    def container_labels(self, role: str = "worker") -> dict[str, str]:
        raise NotImplementedError

    def _getDockerClient(self, client_args: dict[str, Any]) -> LabellingClient:
        """What DockerLatentWorker uses for the worker container: labelled, on the build's network."""
        return LabellingClient(self.raw_client(client_args), self.container_labels(), self.build_network)

    def raw_client(self, client_args: dict[str, Any]) -> Any:
        """The stock docker.APIClient (DockerLatentWorker's), for every other Docker call."""
        return DockerLatentWorker._getDockerClient(self, client_args)
