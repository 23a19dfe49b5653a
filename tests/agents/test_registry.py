"""The agent registry: names, module:Class paths, action-space checks, the CLI listing."""

from __future__ import annotations

import subprocess
import sys

import pytest

import cli
from agents.registry import available_agents, check_spaces, register_agent, resolve_agent
from libero_gym.errors import InvalidInputError
from libero_gym.testing import FakeLiberoEnv


@pytest.fixture
def spaces_():
    env = FakeLiberoEnv()
    return env.observation_space, env.action_space


def test_builtins_registered() -> None:
    agents = available_agents()
    assert {"gaussian-ppo", "diffusion-ppo"} <= set(agents)
    assert agents["gaussian-ppo"].class_path == "agents.gaussian_ppo:GaussianPPO"


def test_unknown_name_lists_available() -> None:
    with pytest.raises(InvalidInputError) as info:
        resolve_agent("nope-ppo")
    message = str(info.value)
    assert "gaussian-ppo" in message and "diffusion-ppo" in message and "nope-ppo" in message


@pytest.mark.parametrize("path", ["stable_baselines3:SAC", "stable_baselines3:TD3", "stable_baselines3:PPO"])
def test_sb3_class_by_path(path: str, spaces_) -> None:
    spec = resolve_agent(path)
    assert spec.protocol == "sb3" and spec.load_class().__name__ == path.split(":")[1]
    check_spaces(spec, *spaces_)  # Box actions: fine


def test_dqn_rejected_for_box_actions(spaces_) -> None:
    with pytest.raises(InvalidInputError, match="DQN.*action space"):
        check_spaces(resolve_agent("stable_baselines3:DQN"), *spaces_)


@pytest.mark.parametrize("path", ["no_such_module_xyz:Foo", "stable_baselines3:NoSuchClass", "json:dumps", "a:"])
def test_bad_paths(path: str) -> None:
    with pytest.raises(InvalidInputError):
        resolve_agent(path)


def test_register_agent_from_python(spaces_) -> None:
    spec = register_agent("test-a2c", "stable_baselines3:A2C", description="A2C for a test", overwrite=True)
    assert resolve_agent("test-a2c") == spec and spec.protocol == "sb3"
    check_spaces(spec, *spaces_)
    with pytest.raises(InvalidInputError, match="already registered"):
        register_agent("test-a2c", "stable_baselines3:A2C")


def test_config_overrides_validated() -> None:
    spec = resolve_agent("gaussian-ppo")
    assert spec.make_config({"n_steps": 8}).n_steps == 8
    with pytest.raises(InvalidInputError, match="n_stepz"):
        spec.make_config({"n_stepz": 8})
    with pytest.raises(InvalidInputError):
        spec.make_config({"n_steps": 0})


def test_cli_lists_agents(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["agents"]) == 0
    out = capsys.readouterr().out
    assert "gaussian-ppo" in out and "diffusion-ppo" in out


@pytest.mark.parametrize(
    "argv, match",
    [
        (["train", "--agent", "nope"], "gaussian-ppo"),
        (["train", "--agent", "stable_baselines3:DQN", "--run-dir", "{tmp}/x"], "DQN"),
        (["train", "--agent", "stable_baselines3:SAC", "--agent.kwargs", "[1]",
          "--run-dir", "{tmp}/x"], "JSON object"),
        (["train", "--agent.n-stepz", "3", "--run-dir", "{tmp}/x"], "n-stepz"),
        (["train", "--agent", "diffusion-ppo", "--agent.policy.horizon-steps", "0", "--run-dir", "{tmp}/x"],
         "horizon_steps and denoising_steps must be >= 1"),
        (["train", "--resume"], "--resume"),  # --resume RUN_DIR: the folder is its value
        (["train", "--resume", "{tmp}/x", "--run-dir", "{tmp}/y"], "different folders"),
        (["train", "--num-envs", "0"], "num_envs"),
        (["eval", "--checkpoint", "{tmp}/missing"], "does not exist"),
    ],
)
def test_cli_user_errors_are_one_line(argv: list[str], match: str, tmp_path, capsys) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and match in err and "\n" not in err
    assert not (tmp_path / "x").exists()  # nothing written


def test_commands_module_is_light() -> None:
    heavy = "('torch', 'mujoco', 'robosuite', 'stable_baselines3')"
    code = f"import sys, agents.configs; sys.exit(any(m in sys.modules for m in {heavy}))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_init_from_supplies_the_defaults_flags_override(tmp_path) -> None:
    """`train --init-from CKPT`: the checkpoint's agent and settings are the defaults; an explicit flag wins."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.agent_configs import GaussianPPOConfig
    from agents.checkpoint import save_checkpoint
    from agents.registry import build_agent
    from libero_gym.env_config import EnvConfig
    from libero_gym.testing import FakeLiberoEnv

    spec = resolve_agent("gaussian-ppo")
    env = DummyVecEnv([lambda: FakeLiberoEnv("state")])
    saved = GaussianPPOConfig(n_steps=16, batch_size=16, net_arch=(32, 32), gamma=0.9)
    model = build_agent(spec, env, saved, seed=0, device="cpu")
    path = save_checkpoint(model, tmp_path / "ck", agent="gaussian-ppo", env=EnvConfig("LIBERO-Goal-v0", (0,), "state"))
    env.close()
    config = cli._parse(["train", "--init-from", str(path), "--agent.gamma", "0.95", "--num-envs", "3"])
    assert config.agent == GaussianPPOConfig(n_steps=16, batch_size=16, net_arch=(32, 32), gamma=0.95)
    assert config.num_envs == 3 and str(config.init_from) == str(path)
    config = cli._parse(["train", "--agent", "gaussian-ppo", "--agent.n-steps", "8", "--init-from", f"{path}"])
    assert config.agent == GaussianPPOConfig(n_steps=8, batch_size=16, net_arch=(32, 32), gamma=0.9)
    # without --init-from: the config's own defaults
    assert cli._parse(["train", "--agent.gamma", "0.95"]).agent == GaussianPPOConfig(gamma=0.95)
