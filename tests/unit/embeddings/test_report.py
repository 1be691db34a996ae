"""The embeddings report's data inside its <script> element: hostile ids cannot end or derail it."""

import json

from seismo.embeddings.report import script_json

HOSTILE = ["<!--<script>", "</script><script>alert(1)</script>", "a & b > c", "\\<", "<\\/", "\u2028\u2029", "]]>", "-->"]


def test_script_json_holds_no_markup_and_parses_back_to_the_same_values():
    text = script_json({"ids": HOSTILE, "nested": [{"id": value} for value in HOSTILE]})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"ids": HOSTILE, "nested": [{"id": value} for value in HOSTILE]}
