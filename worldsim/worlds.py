"""The world registry: a world (env + data policies + detector + planning goals + eval extras) is a plug-in.

The core knows no world. A world registers a `World` here, either on import of its package or through the
`worldsim.worlds` entry-point group (each entry point names a `World` object or a function returning one); the
first lookup loads the entry points. `worldsim record --policy`, `worldsim eval` and the planners find worlds here
by name or by Gymnasium env id.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import WorldSimError, suggest

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "worldsim.worlds"


class UnknownWorld(WorldSimError, KeyError):
    """No world is registered under that name or env id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class World:
    """Everything worldsim knows about one world. Only `name` and `env_id` are required.

    Attributes:
        name: short name ("pushworld").
        env_id: its Gymnasium id ("worldsim/PushWorld-v0"), made with render_mode="rgb_array".
        make_env: optional factory `make_env(size=None, action_mode=None, **kwargs) -> gym.Env` used instead of
            `gymnasium.make(env_id, render_mode="rgb_array")` (size: frame side; action_mode: "text" | "vector").
        policies: data policies for `worldsim record --policy NAME`: name → zero-argument factory of a policy
            `policy(env, obs, info, rng) -> action` with an optional `reset()`.
        default_policy: the policy `record` uses for this world when none is named.
        detector: optional `detector(frame uint8 (H, W, 3)) -> dict[str, Any]` reading the world's objects or pose
            from a rendered or imagined frame.
        eval_extras: optional `eval_extras(model, **options) -> dict` of world-specific metrics for `worldsim eval`.
        goals: optional `worldsim.plan_goals.Goals` for `worldsim plan`: start/goal pairs from held-out episodes,
            the step budget, the success test on a real state, and save/restore of the real simulator.
        extras: anything else the world wants to expose (named hooks for its own tools).
    """

    name: str
    env_id: str
    make_env: Callable[..., Any] | None = None
    policies: Mapping[str, Callable[[], Any]] = field(default_factory=dict)
    default_policy: str | None = None
    detector: Callable[..., dict[str, Any]] | None = None
    eval_extras: Callable[..., dict[str, Any]] | None = None
    goals: Any = None
    extras: Mapping[str, Any] = field(default_factory=dict)


_WORLDS: dict[str, World] = {}
_loaded = False


def register(world: World) -> World:
    """Add (or replace) a world; returns it, so a module can write `WORLD = register(World(...))`."""
    if not isinstance(world, World):
        raise WorldSimError(f"register() takes a worldsim.worlds.World; received {type(world).__name__}.")
    _WORLDS[world.name] = world
    return world


def _load_entry_points() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken third-party plug-in must not break the others
            log.warning("world plug-in %s (%s) failed to load: %s", ep.name, ep.value, exc)
            continue
        world = obj() if callable(obj) and not isinstance(obj, World) else obj
        if isinstance(world, World):
            _WORLDS.setdefault(world.name, world)
        else:
            log.warning("world plug-in %s gave %s, not a World", ep.name, type(world).__name__)


def worlds() -> dict[str, World]:
    """All registered worlds by name."""
    _load_entry_points()
    return dict(_WORLDS)


def find(name_or_env_id: str) -> World | None:
    """The world registered under this name or env id, or None."""
    known = worlds()
    if name_or_env_id in known:
        return known[name_or_env_id]
    for world in known.values():
        if world.env_id == name_or_env_id:
            return world
    return None


def get(name_or_env_id: str) -> World:
    """The world registered under this name or env id; UnknownWorld (with a suggestion) otherwise."""
    world = find(name_or_env_id)
    if world is None:
        known = worlds()
        choices = [*known, *(w.env_id for w in known.values())]
        raise UnknownWorld(f"no world is registered as {name_or_env_id!r}; known: {sorted(known)} "
                           f"(env ids {sorted(w.env_id for w in known.values())}).{suggest(name_or_env_id, choices)} "
                           "A new world registers itself with worldsim.worlds.register(World(...)).")
    return world
