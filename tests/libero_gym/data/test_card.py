"""The dataset card of the HDF5 export, and --filter-noops on LIBERO's layout (the shared real collection)."""

from __future__ import annotations

import json

import numpy as np

from libero_gym.data.dataset import read_dataset, validate_dataset
from libero_gym.data.noops import noop_mask
from tests.libero_gym.data.conftest import EPISODES, SETTLE_STEPS, STEPS


def test_filtered_hdf5_export_is_valid_and_carded(collected, tmp_path) -> None:
    from libero_gym.data.export import export_collection

    result = export_collection(collected.out, tmp_path, filter_noops=True, command="libero-gym export X --filter-noops")
    (path,) = result.files
    validate_dataset(path)  # still LIBERO's layout
    (source,) = collected.export.files
    before, after = read_dataset(source), read_dataset(path)
    drops = []
    for old, new in zip(before.episodes, after.episodes):
        keep = np.flatnonzero(~noop_mask(old.actions))
        np.testing.assert_array_equal(new.actions, old.actions[keep])
        np.testing.assert_array_equal(new.states, old.states[keep])
        np.testing.assert_array_equal(new.obs["agentview_rgb"], old.obs["agentview_rgb"][keep])
        assert new.attrs["noops_dropped"] == old.num_samples - len(keep) and new.settle_steps == 0
        np.testing.assert_array_equal(new.init_state, old.init_state)  # LIBERO's init state, as before
        drops.append(int(new.attrs["noops_dropped"]))
    assert all(d >= SETTLE_STEPS for d in drops)  # the settle steps are no-ops by the first-step rule
    assert [r.noops_dropped for r in result.records] == drops

    card = result.card.read_text()
    assert card.startswith(f"# {tmp_path.name}") and "`libero-gym export X --filter-noops`" in card
    assert f"{sum(drops)} steps dropped" in card and "**upside down**" in card
    stats = json.loads((tmp_path / "dataset_statistics.json").read_text())[tmp_path.name]
    assert stats["num_trajectories"] == EPISODES and stats["num_transitions"] == EPISODES * (SETTLE_STEPS + STEPS) - sum(drops)
    actions = np.concatenate([e.actions for e in after.episodes]).astype(np.float32)
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0), rtol=1e-6)


def test_unfiltered_card_counts_policy_steps(collected, tmp_path) -> None:
    from libero_gym.data.export import export_collection

    result = export_collection(collected.out, tmp_path)
    stats = json.loads((tmp_path / "dataset_statistics.json").read_text())[tmp_path.name]
    assert stats["num_transitions"] == EPISODES * STEPS == result.frames  # settle steps stay in the file, not the stats
    assert "off (every recorded step exported)" in result.card.read_text()
