"""A fake Docker engine for unit tests: Buildbot's `buildbot.test.fake.docker` client, extended.

Buildbot's fake gives every container the same id and knows nothing of
labels, health, networks or volumes; `FakeEngine` adds what the Namaskah CI
workers use: unique ids, labels and label filters, a health state per image
(`healthy`, `never` ready, `exits`), logs, networks and volumes. All clients
created while a test runs share one engine (`FakeDockerModule.engine`), so a
test can look at every container the code under test created or removed.
"""

from __future__ import annotations

import itertools

from buildbot.test.fake import docker as buildbot_fake_docker

_ids = itertools.count(1)


class FakeEngine(buildbot_fake_docker.Client):
    """Behaviour per image: `image_health[image]` is healthy (default), `never` or `exits`."""

    def __init__(self, base_url=None, **kwargs):
        super().__init__(base_url)
        self.client_args = kwargs
        self._images.extend(
            {"RepoTags": [tag]}
            for tag in (
                "namaskah-ci/worker:py3.11",
                "namaskah-ci/worker:py3.11-servers",
                "namaskah-ci/worker:py3.9",
                "namaskah-ci/tools:latest",
                "namaskah-ci/postgres:15",
                "namaskah-ci/redis:7",
            )
        )
        self.image_health: dict[str, str] = {}
        self.removed: list[str] = []
        self.networks_created: dict[str, dict] = {}
        self.volume_store: dict[str, dict] = {}
        self.volumes_in_use: set[str] = set()  # remove_volume refuses these (409), as the engine does
        self.wait_status = 0  # what `wait` answers for a container (a seed copy's cp)
        self.host_configs: list[dict] = []
        self.fail_create: set[str] = set()
        self.execs: list[dict] = []  # exec_create calls
        self.exec_exit_code = 0  # what every exec ends with

    # --- containers ---------------------------------------------------------------------
    def create_host_config(self, *args, **kwargs):
        self.host_configs.append(kwargs)
        return dict(kwargs)

    def create_container(self, image, command=None, **kwargs):
        if image in self.fail_create:
            raise RuntimeError(f"cannot create a container from {image}")
        name = kwargs.get("name") or f"anon-{next(_ids)}"
        if any(c["name"] == name for c in self._containers.values()):
            raise RuntimeError(f"Conflict. The container name /{name} is already in use")
        container_id = f"{next(_ids):064x}"
        self.call_args_create_container.append({"image": image, "command": command, **kwargs})
        self._containers[container_id] = {
            "Id": container_id,
            "image": image,
            "name": name,
            "Names": ["/" + name],
            "State": "created",
            "Labels": dict(kwargs.get("labels") or {}),
            "command": command,
            "kwargs": kwargs,
            "inspections": 0,
        }
        return {"Id": container_id, "Warnings": None}

    def start(self, container):
        container_id = container["Id"] if isinstance(container, dict) else container
        self._containers[container_id]["State"] = "running"
        super().start(container)

    def containers(self, all=False, filters=None, **kwargs):
        found = list(self._containers.values())
        for key, value in (filters or {}).items():
            if key == "name":
                found = [c for c in found if value in c["name"]]
            elif key == "label":
                label, _, wanted = value.partition("=")
                found = [c for c in found if c["Labels"].get(label) == wanted]
        return found

    def inspect_container(self, container_id):
        container = self._containers[container_id]
        container["inspections"] += 1
        behaviour = self.image_health.get(container["image"], "healthy")
        if behaviour == "exits":
            return {"State": {"Running": False, "ExitCode": 1, "Health": {"Status": "unhealthy", "Log": []}}}
        if behaviour == "never":
            log = [{"Output": "127.0.0.1:5432 - no response"}]
            return {"State": {"Running": True, "Health": {"Status": "starting", "Log": log}}}
        status = "healthy" if container["inspections"] >= 2 else "starting"
        return {"State": {"Running": True, "Health": {"Status": status, "Log": []}}}

    def remove_container(self, container_id, **kwargs):
        if container_id not in self._containers:
            raise buildbot_fake_docker.errors.NotFound(f"No such container: {container_id}")
        self.removed.append(container_id)
        del self._containers[container_id]

    def logs(self, container_id, tail=None, **kwargs):
        return b"fake log line\n"

    def running(self, role: str | None = None) -> list[dict]:
        """Containers that exist, optionally only those with a role label."""
        found = list(self._containers.values())
        if role:
            found = [c for c in found if c["Labels"].get("org.namaskah.ci.role") == role]
        return found

    # --- networks and volumes -----------------------------------------------------------
    def create_networking_config(self, endpoints):
        return {"EndpointsConfig": endpoints}

    def create_endpoint_config(self, **kwargs):
        return kwargs

    def create_network(self, name, **kwargs):
        self.networks_created[name] = {"Id": name, "Name": name, "Labels": kwargs.get("labels") or {}}
        return {"Id": name}

    def networks(self, filters=None, **kwargs):
        found = list(self.networks_created.values())
        if filters and "label" in filters:
            label, _, wanted = filters["label"].partition("=")
            found = [n for n in found if n["Labels"].get(label) == wanted]
        return found

    def remove_network(self, name):
        if name not in self.networks_created:
            raise buildbot_fake_docker.errors.NotFound(f"network {name} not found")
        del self.networks_created[name]

    def inspect_volume(self, name):
        if name not in self.volume_store:
            raise buildbot_fake_docker.errors.NotFound(f"volume {name} not found")
        return self.volume_store[name]

    def create_volume(self, name=None, labels=None, **kwargs):
        self.volume_store[name] = {"Name": name, "Labels": labels or {}, "CreatedAt": "2026-12-01T10:00:00Z"}
        return self.volume_store[name]

    def volumes(self, filters=None):
        found = list(self.volume_store.values())
        for label in (filters or {}).get("label", []):
            key, _, wanted = label.partition("=")
            found = [v for v in found if v["Labels"].get(key) == wanted]
        return {"Volumes": found, "Warnings": None}

    def remove_volume(self, name, force=False):
        if name in self.volumes_in_use:
            raise RuntimeError(f"409 Conflict: remove {name}: volume is in use")
        if name not in self.volume_store:
            raise buildbot_fake_docker.errors.NotFound(f"volume {name} not found")
        del self.volume_store[name]

    def wait(self, container, timeout=None):
        return {"StatusCode": self.wait_status}

    # --- commands run in a container (a service's set-up) -------------------------------------
    def exec_create(self, container, cmd, **kwargs):
        self.execs.append({"container": container, "cmd": list(cmd), **kwargs})
        return {"Id": f"exec-{len(self.execs)}"}

    def exec_start(self, exec_id, **kwargs):
        return b""

    def exec_inspect(self, exec_id):
        return {"ExitCode": self.exec_exit_code}


class FakeDockerModule:
    """Stands in for the `docker` module inside buildbot.worker.docker: every client is `engine`."""

    __version__ = buildbot_fake_docker.__version__
    errors = buildbot_fake_docker.errors

    def __init__(self):
        self.engine = FakeEngine()

    def APIClient(self, base_url=None, **kwargs):
        self.engine.base_url = base_url
        self.engine.client_args = kwargs
        return self.engine
