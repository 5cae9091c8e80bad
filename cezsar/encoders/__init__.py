"""From videos and sentences to vectors: decoding, the frame CNNs and CLIP, the sentence encoder, objects, the
feature store and extraction, the offline resources they load (paper §3.2, §3.5)."""
