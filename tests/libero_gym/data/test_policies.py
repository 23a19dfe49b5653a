"""Policies that collect runs: the registry, its hook for applications, errors (agents' checkpoint
policy: tests/agents/test_policy.py)."""

from __future__ import annotations

import numpy as np
import pytest

from libero_gym.data import policies
from libero_gym.data.policies import PolicySpec, RandomPolicy, check_policy_spec, make_policy, register_policy
from libero_gym.errors import InvalidInputError


def test_random_policy_is_seeded_per_episode() -> None:
    policy = make_policy(PolicySpec("random"))
    assert isinstance(policy, RandomPolicy)
    policy.seed(3)
    first = [policy.act({}) for _ in range(4)]
    policy.seed(3)
    again = [policy.act({}) for _ in range(4)]
    np.testing.assert_array_equal(first, again)
    assert all(a.shape == (7,) and np.all(np.abs(a) <= 1) for a in first)


def test_unknown_policies_are_user_errors() -> None:
    with pytest.raises(InvalidInputError, match="policy must be one of"):
        make_policy(PolicySpec("nope"))
    with pytest.raises(InvalidInputError, match="cannot import policy"):
        make_policy(PolicySpec("no_such_module_xyz:Policy"))


class _Checked:
    """A registered policy builder with a check (what an application such as ``agents`` registers)."""

    checked: list[PolicySpec] = []

    @classmethod
    def check(cls, spec: PolicySpec) -> None:
        if not spec.checkpoint:
            raise InvalidInputError("policy 'checked' needs --checkpoint DIR")
        cls.checked.append(spec)

    @classmethod
    def from_spec(cls, spec: PolicySpec) -> RandomPolicy:
        return RandomPolicy(spec.seed + 1)


def test_applications_register_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policies, "POLICIES", dict(policies.POLICIES))
    with pytest.raises(InvalidInputError, match="policy must be one of"):
        make_policy(PolicySpec("checked"))
    register_policy("checked", f"{__name__}:_Checked")
    assert "checked" in policies.POLICIES
    with pytest.raises(InvalidInputError, match="needs --checkpoint"):
        check_policy_spec(PolicySpec("checked"))
    check_policy_spec(PolicySpec("checked", checkpoint="x"))
    assert _Checked.checked == [PolicySpec("checked", checkpoint="x")]
    built = make_policy(PolicySpec("checked", seed=2))
    assert isinstance(built, RandomPolicy)
    np.testing.assert_array_equal(built.act({}), RandomPolicy(3).act({}))
    # a worker (another process: no registration) builds from the factory the parent resolved
    monkeypatch.setattr(policies, "POLICIES", {"random": policies.POLICIES["random"]})
    assert isinstance(make_policy(PolicySpec("checked"), f"{__name__}:_Checked"), RandomPolicy)
    with pytest.raises(InvalidInputError, match="already registered"):
        register_policy("random", f"{__name__}:_Checked")
    with pytest.raises(InvalidInputError, match="module:Class"):
        register_policy("bad", "no_colon")


