"""The summary's lines of each region's held-out cost (a global grid's hemispheres), by hand."""

from __future__ import annotations

import numpy as np

from empirical_seaice.run.finish import region_lines
from empirical_seaice.run.train import held_out_regions
from empirical_seaice.training.history import TrainingHistory


def test_a_region_whose_cost_rose_is_said_to_have_risen():
    """North 70 -> 62 (epoch 2) -> 66 -> 70: at the kept epoch 4, 70 is over 5 % above its lowest, 62 at
    epoch 2; the south falls throughout. Kept epoch 3: 66 is 6.5 % above 62, still a rise; with the
    north at 65 at epoch 3 (4.8 %) it is not. No kept epoch: the last."""
    h = TrainingHistory(valid_cost_regions={"north": [70.0, 62.0, 66.0, 70.0], "south": [200.0, 90.0, 60.0, 50.0]})
    h.epoch_terms = [{}] * 4
    north, south = region_lines(h, 4)
    assert north == (
        "north: 70 -> 70, its lowest 62 at epoch 2; it rose after epoch 2 while the whole's fell: "
        "the north's state is likely over-fitted"
    )
    assert south == "south: 200 -> 50, its lowest 50 at epoch 4"
    assert "rose after epoch 2" in region_lines(h, 3)[0]
    h.valid_cost_regions["north"][2] = 65.0
    assert region_lines(h, 3)[0] == "north: 70 -> 65, its lowest 62 at epoch 2"
    assert region_lines(h, None) == region_lines(h, 4)
    assert region_lines(TrainingHistory(), 3) == []


def test_a_held_region_says_so_instead_of_a_rise():
    """North 70 -> 62 (epoch 2) -> 66, held after epoch 3's validation at epoch 2's state, then 63, 70: at
    the kept epoch 5 it says where it was held instead of a rise (70 is 13 % above 62); kept at epoch 3
    too (the hold comes before the whole's validation: the kept epoch 3 has the held state). Kept at epoch
    2, before the hold: not a word of it."""
    h = TrainingHistory(valid_cost_regions={"north": [70.0, 62.0, 66.0, 63.0, 70.0]}, region_held={"north": 2})
    h.epoch_terms = [{}] * 5
    held = "its state held at epoch 2's after epoch 3 (its own early stop)"
    assert region_lines(h, 5) == [f"north: 70 -> 70, its lowest 62 at epoch 2; {held}"]
    assert region_lines(h, 3) == [f"north: 70 -> 66, its lowest 62 at epoch 2; {held}"]
    assert region_lines(h, 2) == ["north: 70 -> 62, its lowest 62 at epoch 2"]


def test_held_out_regions_split_the_held_out_observations_by_hemisphere():
    """Grid points 0 and 2 north, 1 south: the held-out observations 5, 7, 8 (grid points 2, 1, 0) give
    north [5, 8] and south [7], each with its grid points and every observation on them; a northern grid,
    or no coordinates, gives none."""
    from types import SimpleNamespace

    obs = SimpleNamespace(igrid=np.array([0, 1, 2, 0, 1, 2, 0, 1, 0]))
    background = SimpleNamespace(lat=np.array([70.0, -70.0, 80.0]))
    regions = held_out_regions(obs, background, np.array([5, 7, 8]))
    assert list(regions) == ["north", "south"]
    assert regions["north"].valid.tolist() == [5, 8] and regions["south"].valid.tolist() == [7]
    assert regions["north"].points.tolist() == [0, 2] and regions["south"].points.tolist() == [1]
    assert regions["north"].obs.tolist() == [0, 2, 3, 5, 6, 8] and regions["south"].obs.tolist() == [1, 4, 7]
    assert held_out_regions(obs, SimpleNamespace(lat=np.array([70.0, 65.0, 80.0])), np.array([5, 7])) is None
    assert held_out_regions(obs, SimpleNamespace(lat=None), np.array([5, 7])) is None
    assert held_out_regions(obs, background, None) is None


def test_a_rank_gets_its_own_part_of_each_hemisphere_in_its_own_numbering():
    """A rank holding grid points 1 (south) and 2 (north) of the grid above: its observations are the global
    1, 2, 4, 5, 7 (local 0-4 on local points 0, 1, 0, 1, 0); with its held-out observations local 1 and 4
    (global 2 on point 2, global 7 on point 1): north = local point 1, observations 1, 3, held-out 1;
    south = local point 0, observations 0, 2, 4, held-out 4."""
    from types import SimpleNamespace

    from empirical_seaice.run.partition import Shard

    obs = SimpleNamespace(igrid=np.array([0, 1, 2, 0, 1, 2, 0, 1, 0]))
    background = SimpleNamespace(lat=np.array([70.0, -70.0, 80.0]))
    shard = Shard(grid=np.array([1, 2]), obs=np.array([1, 2, 4, 5, 7]), ngrid=3, nobs=9)
    regions = held_out_regions(obs, background, np.array([1, 4]), shard)
    north, south = regions["north"], regions["south"]
    assert north.points.tolist() == [1] and north.obs.tolist() == [1, 3] and north.valid.tolist() == [1]
    assert south.points.tolist() == [0] and south.obs.tolist() == [0, 2, 4] and south.valid.tolist() == [4]
