"""DVC stage clip_head: the DepthCLIP head (prompt embeddings, bins) -> data/features/clip_head.safetensors."""

from common import run

from depthcore.features.head import write_head


def main(stage):
    print(f"wrote {write_head(stage.paths.backbone_weights, stage.params.depthclip, stage.paths.clip_head)}")


if __name__ == "__main__":
    run(main)
