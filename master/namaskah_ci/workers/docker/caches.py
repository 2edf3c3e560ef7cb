"""Docker mode's cache volumes: one writable volume per branch, seeded from the default branch's.

A job container mounts one named volume at `/cache` (pip's cache and the
job virtualenvs, `ci_venv.py`). No branch writes a volume another branch's
jobs read:

- the default branch's builds (`[repo] default_branch`) mount
  `namaskah-ci-cache-py<python>`, which only they write;
- every other ref being built (a branch, a pull request's
  `refs/pull/<n>/merge`) mounts a volume of its own,
  `namaskah-ci-cache-py<python>-<ref>-<digest>` (the digest of the ref:
  `feature/a` and `feature-a` never share one); a fork's pull request's name
  ends in `-untrusted`. Volume names do not name the master: masters sharing
  an engine share the volumes of same-named branches, as they share the
  default branch's (give each its own engine to keep them apart).
- A branch's volume, when the master creates it, is seeded with a copy of
  the default branch's (`cp -a` in a short-lived container of the job's
  image that mounts the default branch's volume read-only and nothing else,
  no network), so a new branch does not download and build everything
  again. What a branch writes later stays in its own volume. A fork's
  volume is never seeded (it would read what the default branch cached).
- Bounded: the branch volumes of this master (label `org.namaskah.ci.role=
  branch-cache`) not used for `BRANCH_CACHE_DAYS` days go, and beyond
  `BRANCH_CACHE_MAX` per engine the least recently used go, when the master
  starts and whenever it creates one; a volume a container uses is never
  removed (the engine refuses), nor the default branch's.
- When each volume was last used, and whether its seed finished, is kept
  in `<basedir>/docker-caches.json` (`CacheRecord`); a volume whose seed a
  crash interrupted is made again.

`plan_for` is pure; the rest talks to a blocking docker.APIClient and runs
in a thread (`workers/docker/latent.py` calls it from `deferToThread`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from namaskah_ci.workers.docker import services as ds

CACHE_MOUNT = "/cache"  # the cache volume inside every job container
SEED_MOUNT = "/seed"  # the default branch's volume, read-only, in the seed container only
VOLUME_PREFIX = "namaskah-ci-cache-py"
UNTRUSTED_SUFFIX = "-untrusted"  # a fork's pull request
ROLE_CACHE = "cache"  # the default branch's volume
ROLE_BRANCH_CACHE = "branch-cache"
ROLE_SEED = "cache-seed"
LABEL_REF = f"{ds.LABEL_PREFIX}.ref"
BRANCH_CACHE_DAYS = 14  # a branch volume unused this long is removed
BRANCH_CACHE_MAX = 24  # branch volumes of one master per engine, at most
SEED_TIMEOUT = 600  # seconds a seed copy may take; after that the branch starts with an empty cache
RECORD_FILE = "docker-caches.json"


@dataclasses.dataclass(frozen=True)
class CachePlan:
    """The cache volume of one build: `volume` at /cache; `seed`: the volume it starts as a copy of."""

    volume: str
    seed: str = ""
    ref: str = ""
    branch: bool = False  # a branch's (prunable) volume, not the default branch's


def default_volume(python: str) -> str:
    return f"{VOLUME_PREFIX}{python}"


def branch_volume(python: str, ref: str, fork: bool = False) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", ref).strip("-._")[:40] or "none"
    digest = hashlib.sha256(f"{ref}\0{int(fork)}".encode()).hexdigest()[:12]
    return f"{default_volume(python)}-{slug}-{digest}" + (UNTRUSTED_SUFFIX if fork else "")


def plan_for(python: str, branch: str | None, default_branch: str, fork: bool) -> CachePlan:
    """The volume a build of `branch` (the ref being built) mounts; see the module docstring."""
    ref = (branch or "").removeprefix("refs/heads/")
    if ref == default_branch and not fork:
        return CachePlan(default_volume(python), ref=ref)
    seed = "" if fork else default_volume(python)
    return CachePlan(branch_volume(python, ref, fork), seed=seed, ref=ref, branch=True)


class CacheRecord:
    """`<basedir>/docker-caches.json`: {"<engine> <volume>": {"used": epoch, "seeded": bool}}; a master
    without its basedir (unit tests) keeps none."""

    _lock = threading.Lock()

    def __init__(self, path: str):
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write(self, data: dict[str, Any]) -> None:
        """Best effort: without the record, pruning goes by the volumes' creation times."""
        temporary = f"{self.path}.tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=1, sort_keys=True)
            os.replace(temporary, self.path)
        except OSError:
            pass

    def get(self, host: str, volume: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._read().get(f"{host} {volume}") or {})

    def update(self, host: str, volume: str, **values: Any) -> None:
        with self._lock:
            data = self._read()
            data[f"{host} {volume}"] = {**(data.get(f"{host} {volume}") or {}), **values}
            self._write(data)

    def forget(self, host: str, volumes: Iterable[str]) -> None:
        with self._lock:
            data = self._read()
            for volume in volumes:
                data.pop(f"{host} {volume}", None)
            self._write(data)


_volume_locks: dict[tuple[str, str], threading.Lock] = {}
_volume_locks_guard = threading.Lock()


def _volume_lock(host: str, volume: str) -> threading.Lock:
    with _volume_locks_guard:
        return _volume_locks.setdefault((host, volume), threading.Lock())


def prepare(
    client: Any,  # a blocking docker.APIClient
    plan: CachePlan,
    image: str,
    labels: dict[str, str],
    record: CacheRecord | None,
    host: str,
    log: Callable[[str], object] = print,
    now: float | None = None,
) -> None:
    """In a thread, before a build's worker container starts: its volume exists (a new branch volume
    seeded from the default branch's), its use is recorded, and old branch volumes go."""
    now = time.time() if now is None else now
    instance = labels[ds.LABEL_MASTER]
    role = ROLE_BRANCH_CACHE if plan.branch else ROLE_CACHE
    volume_labels = {ds.LABEL_MASTER: instance, ds.LABEL_ROLE: role, LABEL_REF: plan.ref}
    with _volume_lock(host, plan.volume):
        known = record.get(host, plan.volume) if record else {}
        if plan.branch and known.get("seeded") is False and remove_volume(client, plan.volume):
            log(f"docker: {plan.volume}: its seed was interrupted: made again")
        created = ds.ensure_volume(client, plan.volume, volume_labels)
        if record:
            record.update(host, plan.volume, used=now)
        if created and plan.seed and ds.volume_exists(client, plan.seed):
            if record:
                record.update(host, plan.volume, seeded=False)
            problem = seed(client, image, plan.seed, plan.volume, {**labels, ds.LABEL_ROLE: ROLE_SEED})
            if problem:  # an empty cache rather than a half copy: the job builds what it needs
                log(f"docker: {plan.volume} starts empty: seeding it from {plan.seed} failed: {problem}")
                remove_volume(client, plan.volume)
                ds.ensure_volume(client, plan.volume, volume_labels)
            else:
                log(f"docker: {plan.volume} seeded from {plan.seed}")
            if record:
                record.update(host, plan.volume, seeded=True)
    if created and plan.branch:
        removed = prune(client, instance, record, host, now=now, keep=plan.volume)
        if removed:
            log(f"docker: removed unused branch cache volumes: {', '.join(removed)}")


def seed(
    client: Any, image: str, source: str, volume: str, labels: dict[str, str], timeout: float = SEED_TIMEOUT
) -> str:
    """Copy volume `source` (mounted read-only) into `volume` in a container of `image` without a
    network; '' when done, else why not. The container is removed whatever happens."""
    host_config = client.create_host_config(
        binds=[f"{source}:{SEED_MOUNT}:ro", f"{volume}:{CACHE_MOUNT}:rw"], network_mode="none", init=False
    )
    container_id = ""
    try:
        created = client.create_container(
            image,
            command=["-a", f"{SEED_MOUNT}/.", f"{CACHE_MOUNT}/"],
            entrypoint=["cp"],
            labels=labels,
            host_config=host_config,
            network_disabled=True,
        )
        container_id = created["Id"]
        client.start(container_id)
        status = client.wait(container_id, timeout=timeout)
        code = status.get("StatusCode") if isinstance(status, dict) else status
        if code != 0:
            return f"cp exited with code {code}: {_logs(client, container_id)}"
        return ""
    except Exception as exc:  # the engine, or a timeout (requests' ReadTimeout)
        return str(exc) or type(exc).__name__
    finally:
        if container_id:
            ds.remove_containers(client, [container_id])


def _logs(client: Any, container_id: str) -> str:
    try:
        raw = client.logs(container_id, tail=5)
    except Exception:
        return "(no log)"
    return (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip()[-500:]


def remove_volume(client: Any, name: str) -> bool:
    """Remove a volume; False when it is missing or in use (the engine refuses: 409)."""
    try:
        client.remove_volume(name)
        return True
    except Exception:
        return False


def _created(volume: dict[str, Any]) -> float:
    text = str(volume.get("CreatedAt") or "")
    try:
        return datetime.fromisoformat(re.sub(r"\.\d+", "", text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def prune(
    client: Any,
    instance: str,
    record: CacheRecord | None,
    host: str,
    now: float | None = None,
    keep: str = "",
    days: int = BRANCH_CACHE_DAYS,
    cap: int = BRANCH_CACHE_MAX,
) -> list[str]:
    """Remove this master's branch volumes unused for `days`, then the least recently used beyond
    `cap`; never `keep` nor a volume in use. Returns the names removed."""
    now = time.time() if now is None else now
    found = client.volumes(filters={"label": [f"{ds.LABEL_MASTER}={instance}", f"{ds.LABEL_ROLE}={ROLE_BRANCH_CACHE}"]})
    volumes = (found or {}).get("Volumes") or []
    last_used = {}
    for volume in volumes:
        used = (record.get(host, volume["Name"]) if record else {}).get("used")
        last_used[volume["Name"]] = used if isinstance(used, (int, float)) else _created(volume)
    newest_first = sorted((name for name in last_used if name != keep), key=lambda n: -last_used[n])
    kept = 1 if keep in last_used else 0
    removed = []
    for name in newest_first:
        if now - last_used[name] < days * 86400 and kept < cap:
            kept += 1
            continue
        if remove_volume(client, name):
            removed.append(name)
        else:
            kept += 1  # in use: it stays
    if record and removed:
        record.forget(host, removed)
    return removed
