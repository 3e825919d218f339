import torch

from mpiqa.models.quality_levels import _readout
from mpiqa.models.registry import create_model

torch.set_grad_enabled(False)
m = create_model("mpiqa-small").eval()
vis = m.backbone.visual
tr = torch.load("runs/feature-cache/stem-features-b1f3870363564ed85a6b.pt", weights_only=True)
va = torch.load("runs/feature-cache/stem-features-60654b65c01d33c17ea1.pt", weights_only=True)
print({k: v.shape for k, v in tr.items()}, {k: v.shape for k, v in va.items()})


def stats(f):
    return torch.cat([vis.global_statistics(c.float()) for c in f.split(256)]).double()


def towers(f):
    out = []
    for c in f.split(256):
        c = c.float()
        img = vis.pool(vis.transformer(vis.embed_features(c)))
        s = [_readout(img, m.level_text, m.backbone.logit_scale)] + [h(c) for h in m.extra_heads]
        out.append(torch.stack(s).mean(0))
    return torch.cat(out).double()


xtr, xva = stats(tr["features"]), stats(va["features"])
tva = towers(va["features"])
torch.save(
    {
        "xtr": xtr,
        "xva": xva,
        "tva": tva,
        "tr_mos": tr["mos"],
        "tr_t": tr["synthetic_target"],
        "va_mos": va["mos"],
        "va_t": va["synthetic_target"],
    },
    "runs/ridgehead/feats.pt",
)
