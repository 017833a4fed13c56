# Convenience wrappers; the README's commands are `bash run.sh demo` and `bash run.sh test`.
.PHONY: demo test lint bench docs
demo:
	bash run.sh demo
test:
	bash run.sh test
lint:
	.venv/bin/ruff check vknb tests benchmarks scripts
bench:
	.venv/bin/python -m benchmarks
docs:
	.venv/bin/mkdocs build --strict
