"""Translation methods, one file each.

`methods` never imports the harness (`bench`). Besides the standard library a method imports torch,
torchvision, kornia and lpips (what the official code uses for its losses and augmentations);
`methods.base`, the interface every layer of the harness imports, imports torch only. The contracts in
pyproject.toml and tests/test_layers.py check this.

Adding a method: write `methods/<name>.py` with a `Method` subclass, then add one line to CATALOGUE.
The harness resolves names through this table lazily, so listing methods imports none of them.
"""

# name -> ("module:Class", one-line description)
CATALOGUE: dict[str, tuple[str, str]] = {
    "cyclegan": (
        "methods.cyclegan:CycleGAN",
        "CycleGAN (Zhu et al. 2017): ResNet generators, PatchGAN, LSGAN + cycle + identity losses",
    ),
    "ugatit": (
        "methods.ugatit:UGATIT",
        "U-GAT-IT (Kim et al. 2020): CAM attention, AdaLIN decoder, global and local discriminators",
    ),
    "stargan_v2": (
        "methods.stargan_v2:StarGANv2",
        "StarGAN v2 (Choi et al. 2020): style codes from a mapping network or reference images",
    ),
    "council": (
        "methods.council_gan:CouncilGAN",
        "Council GAN (Nizan & Tal 2020): a council of AdaIN generators that agree, no cycle loss",
    ),
    "gnr": (
        "methods.gnr:GNR",
        "GANs N' Roses (Chong & Forsyth 2021): StyleGAN2 decoder, style = what survives augmentation",
    ),
}
