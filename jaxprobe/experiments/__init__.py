"""The papers' experiments as library functions that return data: reproductions and tables,
independent rechecks of the methods' outputs, and the figures drawn from them.

Research code, `benchmarks/`, the CLI and the report call these; nothing here parses arguments or
writes HTML.
"""
