"""``mt.save`` / ``mt.load``: checkpoints as ``.safetensors`` files.

- a round trip restores a model bit for bit: every array equal, outputs identical;
- the write is atomic: it goes to a temporary file that is renamed over the target
  only once complete, so a failure mid-write leaves neither a half-written target
  nor a stray temporary file, and an existing checkpoint survives untouched;
- a missing file is a FileNotFoundError; a truncated or foreign file a ValueError
  (never garbage arrays);
- metadata (e.g. the model's config) travels in the file's header;
- loading into a model of another shape names the key that does not fit.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitransformer as mt
from minitransformer import nn

SRC = np.array([[1, 2, 3, 0], [4, 5, 6, 7]])
TGT = np.array([[1, 2, 0], [3, 4, 5]])


def make_model(seed: int, tgt_vocab: int = 9) -> nn.Transformer:
    mt.manual_seed(seed)
    return nn.Transformer(
        8,
        tgt_vocab,
        d_model=8,
        num_heads=2,
        num_encoder_layers=1,
        num_decoder_layers=1,
        d_ff=16,
        dropout=0.0,
        max_len=16,
    )


def files_in(folder) -> list[str]:
    return sorted(os.listdir(folder))


# ---------------------------------------------------------------- round trip


def test_round_trip_restores_a_model_bit_for_bit(tmp_path):
    model = make_model(0)
    path = tmp_path / "model.safetensors"
    mt.save(model, path)
    assert files_in(tmp_path) == ["model.safetensors"]  # no temporary file left behind

    state = mt.load(path)
    assert set(state) == set(model.state_dict())  # the file does not keep the order
    for name, array in model.state_dict().items():
        assert state[name].dtype == array.dtype and np.array_equal(state[name], array), name

    other = make_model(1)
    assert not np.array_equal(other(SRC, TGT).numpy(), model(SRC, TGT).numpy())
    other.load_state_dict(state)
    assert np.array_equal(other(SRC, TGT).numpy(), model(SRC, TGT).numpy())


@given(
    arrays=st.dictionaries(
        st.text(alphabet="abcdefgh.0123456789", min_size=1, max_size=12),
        st.tuples(
            st.sampled_from(["float32", "float64", "int64"]),
            st.lists(st.integers(1, 3), min_size=1, max_size=3),
            st.integers(0, 2**31 - 1),
        ),
        max_size=4,
    )
)
@settings(max_examples=15, deadline=None)
def test_round_trip_of_any_dict_of_arrays(tmp_path_factory, arrays):
    rng_state = {}
    for name, (dtype, shape, seed) in arrays.items():
        rng = np.random.default_rng(seed)
        rng_state[name] = (rng.standard_normal(shape) * 100).astype(dtype)
    path = tmp_path_factory.mktemp("ckpt") / "state.safetensors"
    mt.save(rng_state, path)
    loaded = mt.load(path)
    assert set(loaded) == set(rng_state)
    for name, a in rng_state.items():
        assert loaded[name].dtype == a.dtype and loaded[name].shape == a.shape
        assert np.array_equal(loaded[name], a)


def test_a_scalar_parameter_round_trips(tmp_path):
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.temperature = nn.Parameter(np.array(0.5))  # shape ()

    path = tmp_path / "s.safetensors"
    mt.save(Scaled(), path)
    assert mt.load(path)["temperature"].shape == ()
    Scaled().load_state_dict(mt.load(path))


def test_float64_model_round_trips_in_float64(tmp_path):
    model = make_model(0).double()
    mt.save(model, tmp_path / "m.safetensors")
    state = mt.load(tmp_path / "m.safetensors")
    assert all(a.dtype == np.float64 for a in state.values())
    assert all(np.array_equal(state[k], v) for k, v in model.state_dict().items())


def test_metadata_round_trip(tmp_path):
    model = make_model(0)
    path = tmp_path / "m.safetensors"
    mt.save(model, path, metadata=model.config)
    assert mt.load_metadata(path) == model.config
    # the config is enough to rebuild the model and load its weights
    rebuilt = nn.Transformer(**mt.load_metadata(path))
    rebuilt.load_state_dict(mt.load(path))
    assert np.array_equal(rebuilt(SRC, TGT).numpy(), model(SRC, TGT).numpy())
    mt.save(model, tmp_path / "bare.safetensors")
    assert mt.load_metadata(tmp_path / "bare.safetensors") == {}


def test_loading_into_a_model_of_another_shape_names_the_key(tmp_path):
    path = tmp_path / "m.safetensors"
    mt.save(make_model(0, tgt_vocab=9), path)
    with pytest.raises(
        ValueError, match=r"tgt_embed\.weight: checkpoint \(9, 8\) vs model \(12, 8\)"
    ):
        make_model(1, tgt_vocab=12).load_state_dict(mt.load(path))


# ---------------------------------------------------------------- atomic writes


def test_failed_rename_leaves_no_file_and_no_temporary(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated crash"):
        mt.save(make_model(0), tmp_path / "m.safetensors")
    assert files_in(tmp_path) == []


def test_failure_mid_write_leaves_an_existing_checkpoint_untouched(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    mt.save(make_model(0), path)
    before = path.read_bytes()

    real_fdopen = os.fdopen

    class HalfWriter:
        """A file that writes half of what it is given, then fails (a full disk)."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError("simulated: no space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="no space left"):
        mt.save(make_model(1), path)
    monkeypatch.undo()

    assert files_in(tmp_path) == ["m.safetensors"]
    assert path.read_bytes() == before
    other = make_model(2)
    other.load_state_dict(mt.load(path))
    assert np.array_equal(other(SRC, TGT).numpy(), make_model(0)(SRC, TGT).numpy())


def test_saving_into_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mt.save(make_model(0), tmp_path / "nowhere" / "m.safetensors")


# ---------------------------------------------------------------- clear errors on bad files


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        mt.load(tmp_path / "absent.safetensors")


def test_a_folder_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        mt.load(tmp_path)


@pytest.fixture
def checkpoint_bytes(tmp_path) -> bytes:
    path = tmp_path / "real.safetensors"
    mt.save(make_model(0), path, metadata={"note": "for cutting"})
    return path.read_bytes()


def cut_points(raw: bytes) -> dict[str, int]:
    header_len = int.from_bytes(raw[:8], "little")
    return {
        "inside the length prefix": 5,
        "just after the length prefix": 8,
        "inside the header": 8 + header_len // 2,
        "just after the header": 8 + header_len,
        "inside the data": (8 + header_len + len(raw)) // 2,
        "one byte short": len(raw) - 1,
    }


@pytest.mark.parametrize(
    "where",
    [
        "inside the length prefix",
        "just after the length prefix",
        "inside the header",
        "just after the header",
        "inside the data",
        "one byte short",
    ],
)
def test_truncated_file_is_a_value_error(tmp_path, checkpoint_bytes, where):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(checkpoint_bytes[: cut_points(checkpoint_bytes)[where]])
    with pytest.raises(ValueError, match=str(path.name)):
        mt.load(path)
    with pytest.raises(ValueError):
        mt.load_metadata(path)


def test_empty_file_is_a_value_error(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="only 0 bytes"):
        mt.load(path)


@given(seed=st.integers(0, 2**31 - 1), size=st.integers(1, 2000))
@settings(max_examples=20, deadline=None)
def test_random_bytes_are_a_value_error(tmp_path_factory, seed, size):
    path = tmp_path_factory.mktemp("foreign") / "noise.safetensors"
    path.write_bytes(np.random.default_rng(seed).bytes(size))
    with pytest.raises(ValueError, match="not a (valid )?safetensors file"):
        mt.load(path)


def test_a_json_file_is_a_value_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"d_model": 8, "num_heads": 2, "weights": [1, 2, 3]}))
    with pytest.raises(ValueError, match="not a (valid )?safetensors file"):
        mt.load(path)


def test_a_header_that_is_not_json_is_a_value_error(tmp_path):
    # a plausible length prefix followed by bytes that are not a JSON header
    body = b"\xff\xfe not json at all, just bytes"
    path = tmp_path / "bad_header.safetensors"
    path.write_bytes(len(body).to_bytes(8, "little") + body)
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        mt.load(path)
