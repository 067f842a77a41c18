"""``Props``: what to start (an actor class or factory and its constructor arguments).

Spawn options (``name``, ``mailbox``, ``metrics_label``) stay apart from the
constructor's arguments, so a constructor may take parameters with any names:

>>> from troupe import Actor, Props
>>> class Greeter(Actor):
...     def __init__(self, name: str) -> None:
...         self.greeting = f"hello {name}"
>>> props = Props(Greeter, name="Ada")    # `name` goes to Greeter(name="Ada")
>>> props
Props(Greeter, name='Ada')
>>> # system.spawn(props, name="greeter")  # `name` names the actor

``spawn(Cls, *args, **kwargs)`` is the short form of ``spawn(Props(Cls, *args, **kwargs))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .actor import Actor


class Props:
    """An actor class (or a factory returning an Actor) with its constructor arguments.

    The arguments are used again at every restart. Raises TypeError at once when
    ``factory`` cannot make an actor (an instance, not a class; not callable).
    """

    __slots__ = ("args", "factory", "kwargs")

    def __init__(self, factory: Callable[..., Actor], /, *args: Any, **kwargs: Any) -> None:
        check_factory(factory)
        self.factory = factory
        self.args = args
        self.kwargs = kwargs

    @classmethod
    def of(cls, factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Props:
        """``factory`` as Props: a Props as it is (then no further arguments), else
        ``Props(factory, *args, **kwargs)``."""
        if isinstance(factory, Props):
            if args or kwargs:
                given = ", ".join([*map(repr, args), *kwargs])
                raise TypeError(
                    f"spawn got a Props and constructor arguments ({given}); "
                    "put the constructor arguments inside Props(...)"
                )
            return factory
        props = cls.__new__(cls)
        check_factory(factory)
        props.factory = factory
        props.args = args
        props.kwargs = kwargs
        return props

    @property
    def label(self) -> str:
        """The factory's name (the default of actor names and metrics labels)."""
        return getattr(self.factory, "__name__", "actor")

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Props)
            and other.factory is self.factory
            and other.args == self.args
            and other.kwargs == self.kwargs
        )

    def __hash__(self) -> int:
        return hash(self.factory)

    def __repr__(self) -> str:
        parts = [self.label, *map(repr, self.args)]
        parts += [f"{key}={value!r}" for key, value in self.kwargs.items()]
        return f"Props({', '.join(parts)})"


def check_factory(factory: Any) -> None:
    """Raise TypeError unless ``factory`` is an Actor class or a callable making one."""
    if isinstance(factory, type):
        return  # a non-Actor class is reported when it returns a non-Actor
    if isinstance(factory, Actor):
        cls = type(factory).__name__
        raise TypeError(
            f"spawn takes an Actor class or a factory, got an instance of {cls}; "
            f"pass the class and its arguments: spawn({cls}, ...)"
        )
    if not callable(factory):
        raise TypeError(f"spawn takes an Actor class or a factory, got {factory!r}")
