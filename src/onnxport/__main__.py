"""`python -m onnxport ...`, including the legacy `python -m onnxport --model=X OUT` form."""

from onnxport.cli.main import main

raise SystemExit(main())
