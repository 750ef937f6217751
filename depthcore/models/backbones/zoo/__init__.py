"""The backbone zoo: frozen vision backbones (CLIP ResNet-50 and ViT-B/16, DINOv2 ViT-S/14 and ViT-B/14, SAM's
ViT-B image encoder) behind one interface (:class:`depthcore.models.backbones.zoo.base.FrozenBackbone`), each the
module ``<name>.py`` of this package, registered under its name (:mod:`depthcore.models.backbones.zoo.registry`)."""
