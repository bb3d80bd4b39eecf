"""BentoML service and Gradio UI (thin: features come from features/, the bundle from model/)."""
