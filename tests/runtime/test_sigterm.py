"""SIGTERM (docker, systemd, Kubernetes) drains a SyncActorSystem as Ctrl-C does."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from troupe import SyncActorSystem, sigterm

SLOW = """
import signal, sys, time
from troupe import Actor, SyncActorSystem

class Slow(Actor):
    handled = 0

    def receive(self, message):
        time.sleep(0.002)
        Slow.handled += 1

    def on_stop(self):
        print("on_stop after", Slow.handled, flush=True)
"""


def started(script: str) -> subprocess.Popen[str]:
    """Run ``script`` (SLOW first) and wait for it to print "ready"."""
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW + textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    return child


def test_sigterm_drains_a_module_level_system_then_exits_143() -> None:
    child = started(
        """
        system = SyncActorSystem("app", shutdown_timeout=30)
        ref = system.spawn(Slow)
        for i in range(200):
            system.tell(ref, i)
        try:
            print("ready", flush=True)  # inside the try: a SIGTERM right after still runs it
            time.sleep(60)
        finally:
            print("finally ran", flush=True)
        """
    )
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 143, err
    assert out.splitlines() == ["finally ran", "on_stop after 200"]


def test_a_second_sigterm_ends_the_drain_at_once() -> None:
    child = started(
        """
        class Stuck(Slow):
            def on_stop(self):
                print("stopping", flush=True)
                time.sleep(60)

        system = SyncActorSystem("app", shutdown_timeout=120)
        system.spawn(Stuck)
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    child.send_signal(signal.SIGTERM)
    assert child.stdout is not None
    assert child.stdout.readline() == "stopping\n"
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGTERM


def test_the_applications_own_sigterm_handler_is_left_alone() -> None:
    child = started(
        """
        def mine(signum, frame):
            print("the application's handler", flush=True)
            sys.exit(3)

        signal.signal(signal.SIGTERM, mine)
        system = SyncActorSystem("app", shutdown_timeout=30)
        ref = system.spawn(Slow)
        assert signal.getsignal(signal.SIGTERM) is mine
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 3, err
    # its SystemExit still ends the program through the drain at interpreter exit
    assert out.splitlines() == ["the application's handler", "on_stop after 0"]


@pytest.fixture
def default_sigterm() -> Iterator[None]:
    """SIGTERM at its default action for the test, whatever the test runner set."""
    before: Any = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.mark.usefixtures("default_sigterm")
def test_the_default_action_is_back_once_the_last_system_closed() -> None:
    first = SyncActorSystem("first")
    assert sigterm.installed()
    with SyncActorSystem("second"):
        assert sigterm.installed()
    assert sigterm.installed()  # "first" is still open
    first.shutdown()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.usefixtures("default_sigterm")
def test_a_system_made_off_the_main_thread_installs_nothing() -> None:
    made: list[SyncActorSystem] = []
    thread = threading.Thread(target=lambda: made.append(SyncActorSystem("worker")))
    thread.start()
    thread.join()
    try:
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        made[0].shutdown()
