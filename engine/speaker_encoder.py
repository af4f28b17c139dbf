"""Speaker encoder: ECAPA-TDNN over a 128-bin log-mel -> one x-vector per clip.

ECAPA-TDNN (Desplanques et al., 2020, arXiv 2005.07143) as the Base checkpoints ship it:
  stem TDNN (conv + ReLU)
  -> SE-Res2Net blocks (1x1 TDNN, Res2Net of dilated TDNNs, 1x1 TDNN, squeeze-excitation,
     residual), each block's output kept
  -> multi-layer feature aggregation: the block outputs concatenated, one TDNN
  -> attentive statistics pooling: attention-weighted mean and std over time
  -> 1x1 conv to the x-vector (enc_dim).
Every conv pads "same" by reflection (not zeros), as the checkpoint was trained with.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import SpeakerEncoderConfig
from engine.errors import UnsupportedModelError
from engine.mel import SPEAKER_MEL, log_mel_spectrogram


def _same_reflect_conv(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Conv1d:
    return nn.Conv1d(cin, cout, kernel, dilation=dilation, padding="same", padding_mode="reflect")


class TDNN(nn.Module):
    """Time-delay layer: a (dilated) 1-D conv over frames, then ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = _same_reflect_conv(cin, cout, kernel, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class Res2Net(nn.Module):
    """Split channels into `scale` groups; group 0 passes through, group i > 1 is convolved
    together with the output of group i - 1, so later groups see ever wider contexts."""

    def __init__(self, channels: int, scale: int, kernel: int, dilation: int):
        super().__init__()
        if channels % scale:
            raise UnsupportedModelError(f"channels {channels} not divisible by res2net scale {scale}")
        self.scale = scale
        width = channels // scale
        self.convs = nn.ModuleList(TDNN(width, width, kernel, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.chunk(x, self.scale, dim=1)  # scale x [B, C/scale, T]
        outputs, previous = [groups[0]], None
        for conv, group in zip(self.convs, groups[1:]):
            previous = conv(group if previous is None else group + previous)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the time-averaged features: x * sigmoid(W2 relu(W1 mean_t(x)))."""

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.conv1 = _same_reflect_conv(channels, bottleneck)
        self.conv2 = _same_reflect_conv(bottleneck, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.conv2(F.relu(self.conv1(x.mean(dim=2, keepdim=True)))))  # [B, C, 1]
        return x * gate


class SERes2NetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cfg: SpeakerEncoderConfig, kernel: int, dilation: int):
        super().__init__()
        self.tdnn1 = TDNN(cin, cout)
        self.res2net = Res2Net(cout, cfg.enc_res2net_scale, kernel, dilation)
        self.tdnn2 = TDNN(cout, cout)
        self.se = SqueezeExcitation(cout, cfg.enc_se_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.se(self.tdnn2(self.res2net(self.tdnn1(x))))


def _weighted_stats(x: torch.Tensor, weights: torch.Tensor, eps: float = 1e-12):
    """Mean and std over time of x [B, C, T] under weights summing to 1 over T -> 2 x [B, C]."""
    mean = (weights * x).sum(dim=2)
    var = (weights * (x - mean[:, :, None]).pow(2)).sum(dim=2)
    return mean, torch.sqrt(var.clamp(min=eps))


class AttentiveStatsPool(nn.Module):
    """Attention over frames, per channel, conditioned on the clip's global mean and std;
    returns the attention-weighted mean and std concatenated, [B, 2C]."""

    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.tdnn = TDNN(3 * channels, attention_channels)
        self.conv = _same_reflect_conv(attention_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[2]
        uniform = torch.full_like(x[:, :1], 1.0 / T)  # [B, 1, T]: every frame is valid
        mean, std = _weighted_stats(x, uniform)
        context = torch.cat([x, mean[:, :, None].expand_as(x), std[:, :, None].expand_as(x)], dim=1)
        attention = torch.softmax(self.conv(torch.tanh(self.tdnn(context))), dim=2)  # [B, C, T]
        mean, std = _weighted_stats(x, attention)
        return torch.cat([mean, std], dim=1)


class SpeakerEncoder(nn.Module):
    """ECAPA-TDNN: log-mel [B, T, mel_dim] -> x-vector [B, enc_dim]."""

    def __init__(self, cfg: SpeakerEncoderConfig):
        super().__init__()
        ch, ks, dil = cfg.enc_channels, cfg.enc_kernel_sizes, cfg.enc_dilations
        if not len(ch) == len(ks) == len(dil) >= 2:
            raise UnsupportedModelError("enc_channels, enc_kernel_sizes and enc_dilations need the same "
                                        "length (>= 2)")
        if sum(ch[1:-1]) != ch[-1]:
            raise UnsupportedModelError(f"the SE-Res2Net outputs ({sum(ch[1:-1])} channels) must add up to "
                                        f"enc_channels[-1] = {ch[-1]} (they are concatenated for aggregation)")
        if (cfg.mel_dim, cfg.sample_rate) != (SPEAKER_MEL.n_mels, SPEAKER_MEL.sample_rate):
            raise UnsupportedModelError("the speaker encoder takes the official 128-bin mel of 24 kHz audio, "
                                        f"got mel_dim={cfg.mel_dim}, sample_rate={cfg.sample_rate}")
        self.cfg = cfg
        self.stem = TDNN(cfg.mel_dim, ch[0], ks[0], dil[0])
        self.blocks = nn.ModuleList(
            SERes2NetBlock(ch[i - 1], ch[i], cfg, ks[i], dil[i]) for i in range(1, len(ch) - 1))
        self.mfa = TDNN(ch[-1], ch[-1], ks[-1], dil[-1])  # multi-layer feature aggregation
        self.pool = AttentiveStatsPool(ch[-1], cfg.enc_attention_channels)
        self.fc = _same_reflect_conv(2 * ch[-1], cfg.enc_dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.stem(mel.transpose(1, 2))  # [B, C0, T]
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        x = self.mfa(torch.cat(outs, dim=1))  # [B, C_last, T]
        return self.fc(self.pool(x)[:, :, None])[:, :, 0]  # [B, enc_dim]

    @torch.inference_mode()
    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        """One mono clip [N] at cfg.sample_rate -> x-vector [enc_dim] (float32)."""
        if wav.dim() != 1:
            raise ValueError(f"expected one mono clip [N], got shape {tuple(wav.shape)}")
        weight = self.stem.conv.weight
        mel = log_mel_spectrogram(wav.to(weight.device), SPEAKER_MEL).transpose(1, 2)  # [1, T, mel]
        return self(mel.to(weight.dtype))[0].float()
