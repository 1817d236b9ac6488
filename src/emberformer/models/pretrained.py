"""Loading SegFormer-B1 decode-head weights from a local folder or the local HF cache."""
from __future__ import annotations

from pathlib import Path

import torch

DEFAULT_SEGFORMER = "nvidia/segformer-b1-finetuned-ade-512-512"
HOW_TO_GET = (
    "on a machine with internet run: python -c \"from transformers import "
    "SegformerForSemanticSegmentation as S; S.from_pretrained('{hub}').save_pretrained('DIR')\" "
    "and pass model.pretrained_path=DIR (or copy the Hugging Face cache)"
)


class PretrainedNotFound(FileNotFoundError):
    """Pretrained weights were asked for but are not on this machine."""


def load_decode_head_state(path: str | None) -> dict[str, torch.Tensor]:
    """Decode-head weights (classifier excluded) of a SegFormer checkpoint, without network."""
    from transformers import SegformerForSemanticSegmentation

    source = str(Path(path).expanduser()) if path else DEFAULT_SEGFORMER
    if path and not Path(source).is_dir():
        raise PretrainedNotFound(
            f"model.pretrained_path={path} is not a folder; {HOW_TO_GET.format(hub=DEFAULT_SEGFORMER)}"
        )
    try:
        full = SegformerForSemanticSegmentation.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as e:
        where = f"in {source}" if path else "in the local Hugging Face cache"
        raise PretrainedNotFound(
            f"no SegFormer weights {where} ({type(e).__name__}); "
            + HOW_TO_GET.format(hub=DEFAULT_SEGFORMER)
        ) from None
    state = full.decode_head.state_dict()
    return {k: v for k, v in state.items() if not k.startswith("classifier.")}
