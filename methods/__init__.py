"""Translation methods, one file each. `methods` imports only torch, never the harness.

Adding a method: write `methods/<name>.py` with a `Method` subclass, then add one line to CATALOGUE.
The harness resolves names through this table lazily, so listing methods imports none of them.
"""

# name -> ("module:Class", one-line description)
CATALOGUE: dict[str, tuple[str, str]] = {
    "cyclegan": (
        "methods.cyclegan:CycleGAN",
        "CycleGAN (Zhu et al. 2017): ResNet generators, PatchGAN, LSGAN + cycle + identity losses",
    ),
}
