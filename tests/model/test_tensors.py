"""model/tensors.py: observations packed on a device and cut into batches."""

from __future__ import annotations

import numpy as np
import torch
from model_fixtures import make_obs

from empirical_seaice.model.tensors import ObservationTensors


def test_observation_tensors_batch_returns_exact_rows():
    obs, bg = make_obs(("amsr2", "gmi"), nobs=30)
    obs.emis_water[3, 0] = np.nan  # masked NaN / inf must arrive as 0
    obs.const_k[3, 1] = np.inf
    ot = ObservationTensors(obs)
    idx = torch.tensor([7, 3, 29, 3])
    b = ot.batch(idx)
    assert len(ot) == 30 and len(b) == 4
    assert b.iobs.tolist() == [7, 3, 29, 3]
    for name in ("igrid", "istep", "isensor"):
        assert getattr(b, name).tolist() == np.asarray(getattr(obs, name))[idx.numpy()].tolist()
    for name in ("t_skin_k", "wind_ms", "cloud_fraction"):
        assert np.array_equal(getattr(b, name).numpy(), getattr(obs, name)[idx.numpy()])
    own = np.asarray(obs.basis.present)[obs.isensor[idx.numpy()]]  # a row holds its sensor's channels only
    assert not own.all()  # (GMI lacks 24h, AMSR2 the GMI channels above 89 GHz: 0 there)
    for name in ("tb_obs_k", "mask", "emis_water", "tau_eff", "down_eff_k", "const_k"):
        expected = np.nan_to_num(getattr(obs, name)[idx.numpy()].astype(np.float32), posinf=0.0) * own
        assert np.array_equal(getattr(b, name).numpy(), expected), name
    assert b.emis_water[1, 0].item() == 0.0 and b.const_k[1, 1].item() == 0.0  # the NaN and the inf
    assert b.mask.dtype == torch.float32 and set(b.mask.unique().tolist()) <= {0.0, 1.0}
    assert ot.all().iobs.tolist() == list(range(30))


# --------------------------------------------------------------------- row counts
