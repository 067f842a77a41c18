"""``ProcessSpec``: one kind of child process in a process tree."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from troupe.errors import ConfigError

from .policy import RestartType
from .process_target import TargetError, path_of, split


@dataclass(frozen=True)
class ProcessSpec:
    """``count`` OS processes that each run the tree named by ``target``.

    >>> spec = ProcessSpec("myapp.workers:build", count=4, shutdown=5.0)
    >>> spec.name, spec.restart.value
    ('build', 'permanent')

    ``target`` is an import path ``package.module:attribute`` (or a module-level
    function/class, turned into its path); see :mod:`troupe.supervisors.process_target`
    for what it may name. ``name`` defaults to the attribute; the processes are
    called ``name-0``, ``name-1``, ... ``restart`` says when an ended process is
    started again (``permanent``, ``transient``: only after a non-zero exit,
    ``temporary``: never). ``shutdown`` is the drain deadline in seconds: the
    child's ActorSystem drains for at most that long after SIGTERM, and the
    parent sends SIGKILL when the process is still alive ``kill_grace`` seconds
    later. ``env`` adds environment variables for these processes.
    """

    target: str
    count: int = 1
    restart: RestartType = RestartType.PERMANENT
    shutdown: float = 10.0
    name: str = ""
    kill_grace: float = 2.0
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        target: Any = self.target
        if not isinstance(target, str):
            try:
                target = path_of(target)
            except TargetError as exc:
                raise ConfigError("target", str(exc)) from None
            object.__setattr__(self, "target", target)
        try:
            _module, attribute = split(target)
        except TargetError as exc:
            raise ConfigError("target", str(exc)) from None
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ConfigError("count", f"must be a positive int, got {self.count!r}")
        try:
            object.__setattr__(self, "restart", RestartType(self.restart))
        except ValueError:
            raise ConfigError(
                "restart", f"must be permanent, transient or temporary; got {self.restart!r}"
            ) from None
        if not self.shutdown >= 0:
            raise ConfigError("shutdown", f"must be zero or positive, got {self.shutdown!r}")
        if not self.kill_grace >= 0:
            raise ConfigError("kill_grace", f"must be zero or positive, got {self.kill_grace!r}")
        if not self.name:
            object.__setattr__(self, "name", attribute.rsplit(".", 1)[-1])

    def process_names(self) -> list[str]:
        """The names of this spec's processes, in start order."""
        return [f"{self.name}-{i}" for i in range(self.count)]
