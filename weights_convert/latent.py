"""A generator's latent prior as stated at conversion (`--latent normal:512`), and its check.

E-GBAS samples codes from a generator's prior (`Model.sample_prior`), which the manifest records
as {"dim": d, "prior": "normal" | "uniform"}. A known architecture records its own; a network
converted from a prototxt or a key map states it with `--latent`, checked against its input.
"""

from __future__ import annotations

from jaxprobe.errors import JaxprobeError

PRIORS = ("normal", "uniform")


def parse_latent(text: str | None):
    """'normal:512' -> {"dim": 512, "prior": "normal"}; 'none' -> {} (no prior); None -> None."""
    if text is None:
        return None
    if text == "none":
        return {}
    prior, _, dim = str(text).partition(":")
    if prior not in PRIORS or not dim.isdigit() or not 1 <= int(dim) <= 2**24:
        raise JaxprobeError(f"latent: expected PRIOR:DIM with PRIOR one of {', '.join(PRIORS)} and 1 <= DIM <= "
                            f"{2**24} (e.g. normal:512), or none, got {text!r}")
    return {"dim": int(dim), "prior": prior}


def latent_record(latent, role: str, input_shape, default=None):
    """The manifest's "latent" entry (None: none): `latent` as `parse_latent` gives it, checked
    against a generator's vector input, else `default`."""
    if latent is None:
        return default
    if latent == {}:
        return None
    if role != "generator":
        raise JaxprobeError(f"latent: only a generator has a latent prior (this network's role is {role!r})")
    if tuple(input_shape) != (latent["dim"],):
        raise JaxprobeError(f"latent: {latent['prior']}:{latent['dim']} does not fit the network's input of shape "
                            f"{tuple(input_shape)}; expected {latent['prior']}:"
                            f"{input_shape[0] if len(input_shape) == 1 else '(a vector input)'}")
    return dict(latent)
