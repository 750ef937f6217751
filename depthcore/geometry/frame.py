"""The image frame: the NYUv2 480 x 640 frame, its fixed crops, camera intrinsics, CLIP feature strides,
the network input normalisation, and pasting crop-space predictions back into the frame.

Crops are ``(top, bottom, left, right)`` half-open pixel ranges on the 480 x 640 NYUv2 frame,
used as ``image[top:bottom, left:right]``. Defined once here; nothing else hard-codes them.
"""

from __future__ import annotations

NYU_HEIGHT = 480
NYU_WIDTH = 640

# Eigen et al.'s evaluation crop (rows 45:471, cols 41:601): the valid region of the Kinect frame.
EIGEN_CROP = (45, 471, 41, 601)
# DepthCLIP's network input crop (rows 56:472, cols 60:604) -> 416 x 544.
DEPTHCLIP_CROP = (56, 472, 60, 604)
# The whole frame as a crop: what the references (DINOv2, DINOv3, Probe3D) predict and score (params eval.frame: full).
FULL_FRAME = (0, NYU_HEIGHT, 0, NYU_WIDTH)
# params ``eval.frame`` -> the crop the evaluate stage predicts on (docs/pipeline.md "Evaluation frame").
EVAL_FRAMES = {"crop": DEPTHCLIP_CROP, "full": FULL_FRAME}

# NYUv2 colour-camera intrinsics for 640 x 480 (fx, fy, cx, cy), pixels.
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)

# The ModifiedResNet CLIP layers and their stride in input pixels. The stem is taken after its third
# conv, before the 2 x 2 average pool (stride 2).
CLIP_LAYERS = ("stem", "layer1", "layer2", "layer3", "layer4")
CLIP_LAYER_STRIDES = {"stem": 2, "layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}

# Network input normalisation of every CLIP input (DepthCLIP's choice: ImageNet statistics, not CLIP's).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise_imagenet(rgb):
    """B x 3 x H x W float tensor in [0, 1] -> ImageNet-normalised (the input of CLIP and the adapters)."""
    import torch

    mean = torch.tensor(IMAGENET_MEAN, dtype=rgb.dtype, device=rgb.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=rgb.dtype, device=rgb.device)[:, None, None]
    return (rgb - mean) / std


def check_image(name: str, x, channels: int | None = None) -> None:
    """ValueError naming ``name`` unless ``x`` is B x C x H x W (with ``channels`` channels when given)."""
    if x.dim() != 4 or (channels is not None and x.shape[1] != channels):
        want = f"B x {channels} x H x W" if channels is not None else "B x C x H x W"
        raise ValueError(f"{name} must be {want}, got {tuple(x.shape)}")


def crop_shape(crop: tuple[int, int, int, int]) -> tuple[int, int]:
    """(height, width) of a crop."""
    top, bottom, left, right = crop
    return bottom - top, right - left


# ------------------------------------------------------------------- prediction geometry (torch)
def crop_tensor(x, crop: tuple[int, int, int, int] = DEPTHCLIP_CROP):
    """... x H x W -> ... x h x w: the crop of the last two axes (numpy array or tensor)."""
    top, bottom, left, right = crop
    return x[..., top:bottom, left:right]


def flip_average(pred, pred_of_flipped):
    """Average a prediction with the prediction of the horizontally flipped input, flipped back.

    pred, pred_of_flipped: B x C x h x w tensors (the second computed on the mirrored image).
    """
    return 0.5 * (pred + pred_of_flipped.flip(-1))


def paste_prediction(
    pred, crop: tuple[int, int, int, int] = DEPTHCLIP_CROP, canvas: tuple[int, int] = (NYU_HEIGHT, NYU_WIDTH)
):
    """Upsample a crop-space prediction to the crop size and paste it into a zero canvas.

    pred: B x 1 x h x w tensor, metres, at the crop or any stride of it. Upsampling is bilinear with
    align_corners=True (DepthCLIP's choice). Returns B x 1 x H x W (canvas), 0 outside the crop.
    """
    import torch
    import torch.nn.functional as F

    top, bottom, left, right = crop
    size = (bottom - top, right - left)
    if tuple(pred.shape[-2:]) != size:
        pred = F.interpolate(pred, size=size, mode="bilinear", align_corners=True)
    out = torch.zeros((*pred.shape[:-2], *canvas), dtype=pred.dtype, device=pred.device)
    out[..., top:bottom, left:right] = pred
    return out
