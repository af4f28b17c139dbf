"""Build and push tooling that turns this repo into a Hugging Face Space (run from a checkout).

    python -m spaces build OUT_DIR [--hardware zero-a10g] [--model Qwen/Qwen3-TTS-12Hz-0.6B-Base]
    python -m spaces push OWNER/NAME [--private] [--hardware ...]

The folder name `spaces` is the layout's. It never ships: the built Space has no `spaces/`
folder, so Hugging Face's own `spaces` package (ZeroGPU), which Gradio imports, is not
shadowed there. What runs inside the Space is `space_runtime/`. Keep this file free of
imports: in a checkout, Gradio's `import spaces` may find this package.
"""
