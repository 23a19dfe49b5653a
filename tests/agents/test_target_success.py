"""``train --target-success``: stop once a full window of training episodes reaches the target."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import pytest

from agents.commands import Train
from agents.train import TargetSuccessCallback
from libero_gym.errors import InvalidInputError


def test_stops_only_once_a_full_window_reaches_the_target() -> None:
    callback = TargetSuccessCallback(0.75)
    buffer: deque[bool] = deque(maxlen=4)
    callback.model = SimpleNamespace(ep_success_buffer=buffer, num_timesteps=0)
    for success in (True, True, True):  # 100% over 3 episodes: the window is not full yet
        buffer.append(success)
        assert callback.on_step() and not callback.reached
    buffer.append(False)  # 3/4 = 0.75: reached
    assert not callback.on_step() and callback.reached
    buffer.append(False)  # a new callback on the same (resumed) model: 2/4 < 0.75, goes on
    again = TargetSuccessCallback(0.75)
    again.model = callback.model
    assert again.on_step() and not again.reached


@pytest.mark.parametrize("value", [0.0, -0.1, 1.5])
def test_target_outside_zero_one_is_a_user_error(value: float) -> None:
    with pytest.raises(InvalidInputError, match="target_success must be in"):
        Train(target_success=value).validate()
