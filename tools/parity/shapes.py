"""Dimensions shared by the tiny parity checkpoints (tools/parity/*) and the tests.

One place for the numbers two builders must agree on: the talker emits codes that the codec
decodes, so both use CODEBOOK_SIZE and NUM_CODE_GROUPS.
"""

CODEBOOK_SIZE = 64  # entries per codebook (released: 2048)
NUM_CODE_GROUPS = 16  # codebooks per 12 Hz frame: 1 semantic + 15 acoustic (as released)

# Tiny talker + code predictor + speaker encoder (tools/parity/tiny_model.py; owner: CORE).
# Shape a: talker width == predictor width (no projection), heads * head_dim != hidden (as
# released: 16 x 128 vs 1024). Shape b: different widths (the small_to_mtp projection), heads,
# kv groups and layer counts. mrope_section sums to head_dim / 2, as released (24+20+20 = 64).
# Speaker encoder enc_dim must equal the talker width (the x-vector is a talker input embedding);
# mel_dim stays 128 (the official mel front end is fixed at 128 bins).
TALKER = {
    "a": {
        "talker": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=16, text_hidden_size=48, mrope_section=[4, 2, 2]),
        "predictor": dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, head_dim=16),
        "speaker": dict(enc_channels=[16, 16, 16, 16, 48], enc_attention_channels=8, enc_res2net_scale=4,
                        enc_se_channels=8),
    },
    "b": {
        "talker": dict(hidden_size=40, intermediate_size=80, num_hidden_layers=3, num_attention_heads=4,
                       num_key_value_heads=1, head_dim=12, text_hidden_size=56, mrope_section=[2, 2, 2]),
        "predictor": dict(hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=3,
                          num_key_value_heads=1, head_dim=8),
        "speaker": dict(enc_channels=[12, 12, 12, 12, 36], enc_attention_channels=6, enc_res2net_scale=3,
                        enc_se_channels=6),
    },
}

# Tiny 12 Hz speech tokenizers (tools/parity/tiny_codec.py; owner: CODEC). "hop" is samples per
# frame: decoder upsampling_ratios x upsample_rates == encoder upsampling_ratios x 2 (released 1920).
# Shape a keeps an explicit head_dim with heads * head_dim != hidden_size, as released (16 x 64 vs
# 512); shape b has grouped kv heads, one upsampling stage and three decoder blocks.
CODEC = {
    "a": {
        "hop": 240,
        "decoder": dict(
            codebook_dim=32, latent_dim=32, hidden_size=32, head_dim=16, num_attention_heads=4,
            num_key_value_heads=4, intermediate_size=64, num_hidden_layers=2, sliding_window=16,
            upsampling_ratios=[2, 2], upsample_rates=[2, 3, 2, 5], decoder_dim=64,
        ),
        "encoder": dict(
            hidden_size=32, num_filters=4, upsampling_ratios=[5, 4, 3, 2], codebook_dim=16,
            vector_quantization_hidden_dimension=16, num_quantizers=20, num_hidden_layers=2,
            intermediate_size=64, num_attention_heads=4, num_key_value_heads=4, sliding_window=32,
        ),
    },
    "b": {
        "hop": 120,
        "decoder": dict(
            codebook_dim=24, latent_dim=40, hidden_size=32, num_attention_heads=4,
            num_key_value_heads=2, intermediate_size=48, num_hidden_layers=3, sliding_window=24,
            upsampling_ratios=[3], upsample_rates=[5, 4, 2], decoder_dim=48,
        ),
        "encoder": dict(
            hidden_size=24, num_filters=6, upsampling_ratios=[5, 4, 3], codebook_dim=12,
            vector_quantization_hidden_dimension=12, num_quantizers=18, num_hidden_layers=2,
            intermediate_size=48, num_attention_heads=2, num_key_value_heads=2, sliding_window=24,
        ),
    },
}
