"""Buildbot 4.3 private API the metrics service needs: serving a resource on the web UI's port.

`WWWService.root` is the root `twisted.web` resource of the web server;
Buildbot attaches /api, /auth, /change_hook, ... to it the same way
(`buildbot/www/service.py`). It exists once `WWWService.setupSite` ran, in the
www service's first reconfig, which comes after the services' reconfig (the
metrics service's included) and before the port listens. So on a first start
`attach_child` wraps `setupSite` on that one instance (the wrapper removes
itself once called, and `detach_child` removes it if the service stops first):
/metrics exists before the first request. Nothing happens at import. Not a bug:
Buildbot offers no public way to serve a resource beside /api on its port, so
this is a private-API accessor (used by www/metrics.py) under the package's
version policy, not a patch with `apply()`.
"""

from __future__ import annotations

from typing import Any

from twisted.python import log
from twisted.web import resource


def www_root(www: Any) -> resource.Resource | None:
    root = getattr(www, "root", None)
    return root if isinstance(root, resource.Resource) else None


def _put(www: Any, name: bytes, child: resource.Resource) -> bool:
    root = www_root(www)
    if root is None:
        return False
    # replaces an earlier one: idempotent; Resource implements IResource through zope.interface, which mypy cannot see
    root.putChild(name, child)  # type: ignore[arg-type]
    return True


def attach_child(www: Any, name: bytes, child: resource.Resource) -> bool:
    """Put `child` at /<name> of the web server now, or as soon as its site is set up."""
    if _put(www, name, child):
        return True
    original = getattr(www, "setupSite", None)
    if original is None:
        log.msg("metrics: the www service has no setupSite; /metrics is not served")
        return False

    def setup_site(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        vars(www).pop("setupSite", None)
        _put(www, name, child)
        return result

    setup_site.metrics_child = child  # type: ignore[attr-defined]  # a marker on the wrapper function
    www.setupSite = setup_site
    return False


def detach_child(www: Any, name: bytes, child: resource.Resource) -> None:
    """Undo `attach_child`: the child, or the pending `setupSite` wrapper."""
    if getattr(vars(www).get("setupSite"), "metrics_child", None) is child:
        del www.setupSite
    root = www_root(www)
    if root is not None and root.children.get(name) is child:
        del root.children[name]
