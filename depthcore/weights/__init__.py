"""The fetch stages' weights folders: downloads, user files under weights/, manifests, and loading them back."""
