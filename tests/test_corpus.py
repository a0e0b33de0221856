"""The training corpus: fixed holdouts that training never sees, crops balanced over groups."""

import sys
from pathlib import Path

import numpy as np
import pytest

from climgen.errors import InputError
from climgen.training.corpus import CORPUS, CorpusSampler, load_corpus

sys.path.insert(0, str(Path(__file__).parent / "data"))
from make_corpus import write_corpus  # noqa: E402


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("shared-data"))


def test_train_and_validation_splits_are_disjoint_and_cover_every_field(corpus_root):
    train, validation = load_corpus(corpus_root, "train"), load_corpus(corpus_root, "validation")
    assert {spec.group for spec in CORPUS} == set(train.groups) == set(validation.groups)
    names = lambda corpus: {item.name.split(" (")[0] for item in corpus.fields}  # noqa: E731
    relief = lambda corpus: {name for name in names(corpus) if name.startswith("relief")}  # noqa: E731
    assert relief(train) == {"relief_lat+00_lon150.nc:elevation"}
    assert relief(validation) == {"relief_lat+30_lon270.nc:elevation"}  # a held-out tile
    by_name = lambda corpus: {item.name.split(" (")[0]: item.slices for item in corpus.fields}  # noqa: E731
    trained, held_out = by_name(train), by_name(validation)
    coads = "coads_climatology_2deg.nc:airt"
    assert trained[coads].shape == (12, 48, 48) and held_out[coads].shape == (12, 48, 48)  # the two halves of the globe
    assert not np.array_equal(trained[coads], held_out[coads], equal_nan=True)
    winds = "navy_winds_monthly_2.5deg.nc:uwnd"
    assert trained[winds].shape[0] == 108 and held_out[winds].shape[0] == 24  # 1982-1990 and 1991-1992
    assert (
        trained["orog_mod3_rectilinear_grid_2D.nc:orog"].shape[-1] + held_out["orog_mod3_rectilinear_grid_2D.nc:orog"].shape[-1]
        == 96
    )


def test_crops_are_balanced_over_groups_and_mostly_valid(corpus_root):
    corpus = load_corpus(corpus_root, "train")
    sampler = CorpusSampler(corpus, 32, min_valid=0.7)
    rng = np.random.default_rng(1)
    for _ in range(300):
        crop, valid = sampler(rng)
        assert crop.shape == (32, 32) and valid.mean() >= 0.7
        assert np.isnan(crop).sum() == (valid == 0).sum()
    # groups are drawn alike, whatever their number of slices (wind has 240, relief 1)
    assert sampler.group_probability == pytest.approx(np.full(len(sampler.groups), 1 / len(sampler.groups)))
    weighted = CorpusSampler(corpus, 32, group_weights={"relief": 5.0})
    assert weighted.group_probability[weighted.groups.index("relief")] == pytest.approx(5 / (len(weighted.groups) + 4))


def test_a_crop_too_large_for_a_group_s_fields_leaves_it_out_with_a_warning(corpus_root):
    """A crop_size of 96 silently trained without COADS and FNOC (90 and 73 rows), while the
    checkpoint listed them as trained on; now a warning names the groups left out."""
    from climgen.errors import InputWarning
    from climgen.training.corpus import Corpus, CorpusField

    corpus = load_corpus(corpus_root, "train")
    small = [CorpusField(item.group, item.name, item.slices[..., :40, :40]) for item in corpus.fields if item.group == "wind"]
    with pytest.warns(InputWarning, match=r"crops of 44 cells do not fit the fields of \['wind'\]"):
        sampler = CorpusSampler(Corpus([item for item in corpus.fields if item.group != "wind"] + small), 44)
    assert sampler.left_out == ["wind"] and "wind" not in sampler.groups


def test_same_seed_gives_the_same_crops(corpus_root):
    sampler = CorpusSampler(load_corpus(corpus_root, "train"), 32)
    first = [sampler(np.random.default_rng(5))[0] for _ in range(3)]
    second = [sampler(np.random.default_rng(5))[0] for _ in range(3)]
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(first, second, strict=True))


def test_missing_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="training data not found: .*etopo5"):
        load_corpus(tmp_path, "train")
    with pytest.raises(InputError, match="no training field is at least 4096"):
        CorpusSampler(load_corpus(write_corpus(tmp_path / "tiny"), "train"), 4096)


def test_a_column_on_the_regional_edge_is_held_out_not_trained_on():
    import xarray as xr

    from climgen.training.corpus import REGIONAL_WEST_EDGE, _split

    rlon = np.array([REGIONAL_WEST_EDGE - 1, REGIONAL_WEST_EDGE, REGIONAL_WEST_EDGE + 1])
    data = xr.DataArray(np.arange(6.0).reshape(2, 3), dims=("rlat", "rlon"), coords={"rlon": rlon})
    train, validation = _split(data, "west", "train"), _split(data, "west", "validation")
    assert train.shape[-1] == 1 and validation.shape[-1] == 2
