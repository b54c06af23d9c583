"""Command-line interface; `onnxport.cli.main.main` is the console script."""
