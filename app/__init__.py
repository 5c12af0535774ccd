"""facestream application: settings, CLI, the pipeline's stages, process runtime, tracking, gallery, display."""
