"""Interrupts held during steps that must not be cut in half, and raised right after them."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from pipeline.plumbing.errors import DeferredInterrupt, interrupt_on_sigterm, interrupts_deferred


@pytest.fixture
def our_handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    interrupt_on_sigterm()
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_signal_during_a_step_waits_for_the_step_then_is_raised(our_handlers):
    done = []
    with pytest.raises(DeferredInterrupt) as raised, interrupts_deferred("the step was done"):
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("first half")
        with interrupts_deferred("an inner step"):  # nested: still held
            done.append("inner")
        done.append("second half")
    assert done == ["first half", "inner", "second half"]
    assert str(raised.value) == "received SIGTERM, held until the step was done"
    # Once raised, nothing stays pending: the next step runs undisturbed.
    with interrupts_deferred():
        done.append("next")
    assert done[-1] == "next"


def test_a_signal_outside_any_step_is_raised_at_once(our_handlers):
    with pytest.raises(KeyboardInterrupt) as raised:
        os.kill(os.getpid(), signal.SIGINT)
        pytest.fail("the interrupt was not raised")  # pragma: no cover
    assert not isinstance(raised.value, DeferredInterrupt)
    assert str(raised.value) == "received SIGINT"


def test_a_step_on_another_thread_leaves_the_interrupt_to_the_main_thread(our_handlers):
    inside, release, finished = threading.Event(), threading.Event(), []

    def background_write():  # as the curves' sender thread writes to the store
        with interrupts_deferred("a background write"):
            inside.set()
            release.wait(10)
        finished.append("write")

    helper = threading.Thread(target=background_write)
    helper.start()
    inside.wait(10)
    try:
        with pytest.raises(KeyboardInterrupt) as raised:
            os.kill(os.getpid(), signal.SIGTERM)
            pytest.fail("the interrupt was held by the other thread's step")  # pragma: no cover
        assert not isinstance(raised.value, DeferredInterrupt)
    finally:
        release.set()
        helper.join(10)
    assert finished == ["write"]  # the other thread's step ran to its end, not interrupted
