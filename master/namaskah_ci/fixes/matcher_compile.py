"""Buildbot's path matcher rebuilds its whole table on every lookup (not filed upstream).

`buildbot.util.pathmatch.Matcher._compile` never clears `_dirty`, so every
lookup rebuilds the table of every endpoint pattern: each REST request paid
for it once in the data API and again in each authz endpoint matcher (8 % of
the master's CPU under 20 concurrent REST clients, bench/pipeline_bench.py).
The replacement clears it; adding a pattern still marks the table dirty.
Reproduction for upstream: `m = Matcher(); m[("a", "n:x")] = 1; m[("a", "1")];
m._dirty` is still True after the lookup.
"""

from __future__ import annotations

from buildbot.util import pathmatch

_original_compile = pathmatch.Matcher._compile


def _compile_once(self: pathmatch.Matcher) -> None:
    _original_compile(self)
    self._dirty = False


def apply() -> None:
    """Compile a path Matcher's table once per change, not per lookup (idempotent)."""
    pathmatch.Matcher._compile = _compile_once
