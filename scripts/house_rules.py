"""The house rules a tool can check (ARCHITECTURE.md, "House rules"):
no file in src/ over 1,000 lines before its tests, no function over 120
lines. Run by scripts/test.sh; prints each breach and exits 1.

A file's length stops at its inline `#[cfg(test)]` module; a function runs
from its `fn` line to the closing brace rustfmt puts at the same indent
(signature, body and braces all count).
"""

import pathlib
import re
import sys

MAX_FILE, MAX_FN = 1000, 120
FN = re.compile(r"^(\s*)(pub(\([^)]*\))? )?(const )?(async )?(unsafe )?(extern \"C\" )?fn \w+")


def is_tests(path):
    """A test module of its own (`foo/tests.rs`, `foo/tests/*.rs`)."""
    return path.name == "tests.rs" or "tests" in path.parts[path.parts.index("src") + 1:-1]


def check(path):
    lines = path.read_text().splitlines()
    cut = next((i for i, l in enumerate(lines) if l.startswith("#[cfg(test)]")), len(lines))
    code = lines if is_tests(path) else lines[:cut]
    if not is_tests(path) and len(code) > MAX_FILE:
        yield f"{path}: {len(code)} lines before its tests (max {MAX_FILE})"
    for i, line in enumerate(code):
        m = FN.match(line)
        if not m or line.rstrip().endswith(";"):
            continue
        end = "%s}" % m.group(1)
        for j in range(i, len(code)):
            if code[j] == end or (j > i and code[j].startswith(end) and code[j][len(end):].strip() in ("", ")", ");", ",")):
                break
            if j > i and FN.match(code[j]) and len(FN.match(code[j]).group(1)) <= len(m.group(1)):
                j = i  # a declaration without a body (trait item)
                break
        n = j - i + 1
        if n > MAX_FN:
            name = line.strip().split("fn ", 1)[1].split("(")[0].split("<")[0]
            yield f"{path}:{i + 1}: fn {name} is {n} lines (max {MAX_FN})"


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    breaches = [b for p in sorted((root / "src").rglob("*.rs")) for b in check(p)]
    for b in breaches:
        print(b)
    if breaches:
        sys.exit(1)
    print("house rules: no file over 1,000 lines before its tests, no function over 120 lines")


if __name__ == "__main__":
    main()
