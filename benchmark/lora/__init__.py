"""The ``lora-edit`` generative track: LoRA bank, latent weight space, renderer/judge, metrics.

See docs/lora-edit.md. Nothing here imports torch: the core is numpy, safetensors and
scikit-learn; a diffusers renderer plugs in through
:class:`benchmark.tracks.lora_edit.track.Renderer`.
"""
