"""The house in figures (issue 9): files over 500 lines, the longest functions, and adapter
probes (getattr/hasattr/type name on adapters in service_layer and entrypoints).

    python3 benchmarks/house_figures.py [REPO_ROOT]
"""
import ast, pathlib, re, sys
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".") / "src/homefeed"
files = sorted(root.rglob("*.py"))
big = []
funcs = []
for f in files:
    src = f.read_text()
    n = src.count("\n")
    if n > 500: big.append((n, str(f.relative_to(root))))
    tree = ast.parse(src)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            funcs.append((node.end_lineno - node.lineno + 1, f"{f.relative_to(root)}:{node.name}"))
funcs.sort(reverse=True)
print("files over 500 lines:", len(big))
for n, f in sorted(big, reverse=True): print(f"  {n:5} {f}")
print("longest functions:")
for n, f in funcs[:8]: print(f"  {n:5} {f}")
probes = 0
for f in files:
    rel = str(f.relative_to(root))
    if rel.startswith(("service_layer", "entrypoints")) and not rel.startswith("entrypoints/cli"):
        for line in f.read_text().splitlines():
            if re.search(r"\b(getattr|hasattr)\((self\.)?_?(stream|index|posts|hf|cache|store|resource|handle|db|limiter|timelines|self\._p|client)\b", line) or "type(index).__name__" in line:
                probes += 1
print("adapter probes (getattr/hasattr/type name in service_layer + entrypoints):", probes)
print("python files:", len(files), "lines:", sum(f.read_text().count("\n") for f in files))
