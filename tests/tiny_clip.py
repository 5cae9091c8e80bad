"""A tiny random CLIP saved like a real one (the tests' stand-in for openai/clip-vit-base-patch16, which cannot
be downloaded here): small towers, the real 49,408-token vocabulary and CLIP's tokenizer built offline."""
from __future__ import annotations

import json
from pathlib import Path

import torch

TINY = {"hidden": 32, "layers": 2, "heads": 2, "image": 32, "patch": 16, "projection": 32}


def save_tiny_clip(out: Path, seed: int = 0) -> Path:
    """Write a random CLIPModel (config + weights), CLIP's tokenizer and preprocessor_config.json to `out`."""
    from transformers import CLIPConfig, CLIPModel

    from cezsar.encoders.clip import CLIP_MEAN, CLIP_STD
    from cezsar.encoders.clip_tokenizer import VOCAB_SIZE, load_clip_tokenizer

    t = TINY
    cfg = CLIPConfig(
        text_config={"vocab_size": VOCAB_SIZE, "hidden_size": t["hidden"], "intermediate_size": 2 * t["hidden"],
                     "num_hidden_layers": t["layers"], "num_attention_heads": t["heads"],
                     "max_position_embeddings": 77, "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407},
        vision_config={"hidden_size": t["hidden"], "intermediate_size": 2 * t["hidden"], "num_hidden_layers": t["layers"],
                       "num_attention_heads": t["heads"], "image_size": t["image"], "patch_size": t["patch"]},
        projection_dim=t["projection"])
    torch.manual_seed(seed)
    model = CLIPModel(cfg).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    load_clip_tokenizer().save_pretrained(str(out))
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": t["image"]},
        "resample": 3, "do_center_crop": True, "crop_size": {"height": t["image"], "width": t["image"]},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(CLIP_MEAN),
        "image_std": list(CLIP_STD), "do_convert_rgb": True}))
    return out
