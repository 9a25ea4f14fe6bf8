"""examples.text_stats: a python action with JSON parameters on stdin and JSON output."""

from __future__ import annotations

import collections
import json
import re
import sys


def main() -> int:
    params = json.load(sys.stdin)
    text = params["text"]
    words = re.findall(r"\w+", text.lower())
    common = collections.Counter(words).most_common(params.get("top", 3))
    result = {
        "characters": len(text),
        "words": len(words),
        "lines": len(text.splitlines()),
        "top_words": [{"word": word, "count": count} for word, count in common],
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
