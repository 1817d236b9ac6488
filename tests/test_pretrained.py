"""Pretrained decode-head weights come from a local save_pretrained folder, never from a hub."""
from __future__ import annotations

import pytest
import torch
from transformers import SegformerConfig, SegformerForSemanticSegmentation

from emberformer.models.emberformer import EmberFormer
from emberformer.models.pretrained import PretrainedNotFound

SIZES = (16, 16, 32, 32)


def tiny_segformer(path):
    torch.manual_seed(1)
    cfg = SegformerConfig(hidden_sizes=list(SIZES), decoder_hidden_size=16, num_labels=150,
                          depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1])
    model = SegformerForSemanticSegmentation(cfg)
    model.save_pretrained(path)
    return model


def make(**kw):
    return EmberFormer(static_channels=2, d_model=16, nhead=2, num_layers=1, dim_feedforward=32,
                       segformer_hidden_sizes=SIZES, decoder_hidden_size=16, base_channels=8, **kw)


def test_decode_head_loaded_from_local_folder(tmp_path):
    saved = tiny_segformer(tmp_path / "segformer")
    model = make(pretrained=True, pretrained_path=str(tmp_path / "segformer"))
    ref = saved.decode_head.state_dict()
    got = model.decode_head.state_dict()
    for k, v in ref.items():
        if k.startswith("classifier."):
            assert got[k].shape[0] == 1  # our 1-class classifier stays freshly initialised
        else:
            assert torch.equal(got[k], v), k
    fresh = make(pretrained=False)
    assert not torch.equal(fresh.decode_head.linear_fuse.weight, got["linear_fuse.weight"])
    # the parameters reported are those used: no SegFormer encoder is built
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in fresh.parameters())


def test_weights_of_other_sizes_name_the_size_keys(tmp_path):
    tiny_segformer(tmp_path / "segformer")
    with pytest.raises(ValueError) as e:
        EmberFormer(static_channels=2, d_model=16, nhead=2, num_layers=1, dim_feedforward=32,
                    segformer_hidden_sizes=(16, 16, 16, 16), decoder_hidden_size=16, base_channels=8,
                    pretrained=True, pretrained_path=str(tmp_path / "segformer"))
    assert str(e.value) == ("model.pretrained=true: the saved decode-head weights do not fit "
                            "model.segformer_hidden_sizes=[16, 16, 16, 16] and model.decoder_hidden_size=16 "
                            "(SegFormer-B1's are [64, 128, 320, 512] and 256)")


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch):
    with pytest.raises(PretrainedNotFound, match="is not a folder; on a machine with internet run"):
        make(pretrained=True, pretrained_path=str(tmp_path / "nope"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedNotFound, match="no SegFormer weights in the local Hugging Face cache"):
        make(pretrained=True)
