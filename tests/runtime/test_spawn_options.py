"""Spawn options stay apart from constructor arguments; every setting fails with a
ConfigError naming it; ThreadActor refuses async handlers."""

from __future__ import annotations

import doctest
import inspect
import math
from typing import Any

import pytest

import troupe.errors
import troupe.mailbox
import troupe.props
from troupe import (
    Actor,
    ActorSystem,
    ConfigError,
    MailboxConfig,
    Props,
    SyncActorSystem,
    ThreadActor,
)


class Person(Actor):
    """A constructor whose parameters share their names with spawn's options."""

    def __init__(
        self, name: str, mailbox: str = "", metrics_label: str = "", parent: str = ""
    ) -> None:
        self.fields = {
            "name": name,
            "mailbox": mailbox,
            "metrics_label": metrics_label,
            "parent": parent,
        }

    def receive(self, message: Any) -> Any:
        if message == "child":
            return self.spawn(Props(Person, name="kid", parent=self.name), name=f"{self.name}.kid")
        return self.fields


async def test_props_pass_constructor_arguments_whatever_their_names() -> None:
    async with ActorSystem("t") as system:
        props = Props(Person, name="Ada", mailbox="inbox", metrics_label="m", parent="Bob")
        ref = system.spawn(props, name="ada", mailbox=MailboxConfig(7), metrics_label="people")
        assert ref.name == "ada"
        assert system.cell_of(ref).mailbox.capacity == 7
        assert await ref.ask("fields") == {
            "name": "Ada",
            "mailbox": "inbox",
            "metrics_label": "m",
            "parent": "Bob",
        }
        child = await ref.ask("child")  # Actor.spawn takes Props too; the child is ours
        assert child.name == "ada.kid"
        assert (await child.ask("fields"))["parent"] == "ada"
        await ref.stop()
        assert not child.is_alive


async def test_short_form_still_works_and_parent_is_a_constructor_argument() -> None:
    async with ActorSystem("t") as system:
        ref = system.spawn(Person, "Ada", parent="Bob", name="ada")
        assert ref.name == "ada"
        assert (await ref.ask("fields"))["parent"] == "Bob"
    for spawn in (ActorSystem.spawn, Actor.spawn):
        assert "parent" not in inspect.signature(spawn).parameters


async def test_props_with_more_arguments_is_refused() -> None:
    async with ActorSystem("t") as system:
        with pytest.raises(TypeError, match=r"inside Props\(\.\.\.\)"):
            system.spawn(Props(Person, "Ada"), "extra")


def test_sync_system_spawns_props() -> None:
    with SyncActorSystem("t") as system:
        ref = system.spawn(Props(Person, name="Ada"), name="ada")
        assert ref.name == "ada"
        assert system.ask(ref, "fields")["name"] == "Ada"


async def test_spawning_an_instance_says_so() -> None:
    async with ActorSystem("t") as system:
        made = Person.__new__(Person)
        with pytest.raises(TypeError, match="got an instance of Person"):
            system.spawn(made)
        with pytest.raises(TypeError, match="Actor class or a factory, got 42"):
            system.spawn(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="got an instance of Person"):
            Props(made)  # type: ignore[arg-type]


class Plain(Actor):
    def receive(self, message: Any) -> Any:
        return message


@pytest.mark.parametrize(
    ("mailbox", "setting"),
    [
        (5, "mailbox"),
        ("big", "mailbox"),
        ({"size": 5}, "mailbox"),
        ({"capacity": 0}, "mailbox.capacity"),
        ({"policy": "nope"}, "mailbox.policy"),
        ({"max_parked": -1}, "mailbox.max_parked"),
    ],
)
async def test_bad_mailbox_at_spawn_names_the_setting(mailbox: Any, setting: str) -> None:
    async with ActorSystem("t") as system:
        with pytest.raises(ConfigError) as info:
            system.spawn(Plain, mailbox=mailbox)
        assert info.value.setting == setting
        assert not system.actors()


async def test_mailbox_mapping_is_a_mailbox_config() -> None:
    async with ActorSystem("t", mailbox={"capacity": 3}) as system:
        ref = system.spawn(Plain, mailbox={"capacity": 5, "policy": "reject"})
        mailbox = system.cell_of(ref).mailbox
        assert (mailbox.capacity, mailbox.policy.value) == (5, "reject")
        assert system.cell_of(system.spawn(Plain)).mailbox.capacity == 3


@pytest.mark.parametrize(
    ("attrs", "setting", "text"),
    [
        ({"throughput": -5}, "throughput", "Tuned.throughput"),
        ({"throughput": 0}, "throughput", "got 0"),
        ({"throughput": "64"}, "throughput", "got '64'"),
        ({"mailbox": 5}, "mailbox", "Tuned.mailbox"),
        ({"mailbox": {"capacity": -1}}, "mailbox.capacity", "Tuned.mailbox"),
    ],
)
async def test_class_settings_are_checked_at_spawn(
    attrs: dict[str, Any], setting: str, text: str
) -> None:
    tuned = type("Tuned", (Plain,), attrs)
    async with ActorSystem("t") as system:
        with pytest.raises(ConfigError, match=text) as info:
            system.spawn(tuned)
        assert info.value.setting == setting


async def test_class_mailbox_mapping_and_throughput_are_used() -> None:
    tuned = type("Tuned", (Plain,), {"mailbox": {"capacity": 4}, "throughput": 2})
    async with ActorSystem("t") as system:
        cell = system.cell_of(system.spawn(tuned))
        assert cell.mailbox.capacity == 4
        assert cell._throughput == 2


@pytest.mark.parametrize("bad", [-1, 0, "1", math.nan, math.inf, True, [1]])
async def test_ask_timeout_is_checked_like_the_system_setting(bad: Any) -> None:
    async with ActorSystem("t") as system:
        ref = system.spawn(Plain)
        with pytest.raises(ConfigError) as info:
            await ref.ask("x", timeout=bad)
        assert info.value.setting == "timeout"
        assert await ref.ask("ok", timeout=1) == "ok"  # an int is fine
    with pytest.raises(ConfigError) as info:
        ActorSystem(ask_timeout=bad)
    assert info.value.setting == "ask_timeout"


@pytest.mark.parametrize(
    ("settings", "setting"),
    [
        ({"shutdown_timeout": -1}, "shutdown_timeout"),
        ({"shutdown_timeout": None}, "shutdown_timeout"),
        ({"shutdown_timeout": "10"}, "shutdown_timeout"),
        ({"throughput": 1.5}, "throughput"),
        ({"mailbox": 3}, "mailbox"),
    ],
)
def test_system_settings_name_the_setting(settings: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        ActorSystem(**settings)
    assert info.value.setting == setting


async def test_spawn_options_are_checked() -> None:
    async with ActorSystem("t") as system:
        with pytest.raises(ConfigError, match="'name'"):
            system.spawn(Plain, name="")
        with pytest.raises(ConfigError, match="'metrics_label'"):
            system.spawn(Plain, metrics_label=3)  # type: ignore[arg-type]


class AsyncInThread(ThreadActor):
    async def receive(self, message: Any) -> Any:  # type: ignore[override]
        return message


class AsyncStartInThread(ThreadActor):
    async def on_start(self) -> None:
        pass

    def receive(self, message: Any) -> Any:
        return message


@pytest.mark.parametrize(
    ("cls", "hook"), [(AsyncInThread, "receive"), (AsyncStartInThread, "on_start")]
)
async def test_thread_actor_refuses_async_handlers_at_spawn(cls: type[Actor], hook: str) -> None:
    async with ActorSystem("t") as system:
        with pytest.raises(ConfigError, match="plain def") as info:
            system.spawn(cls)
        assert info.value.setting == hook
        assert not system.actors()


@pytest.mark.parametrize("module", [troupe.errors, troupe.mailbox, troupe.props])
def test_docstring_examples(module: Any) -> None:
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0
