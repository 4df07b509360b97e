"""Words for messages people read."""


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """'1 accelerator', '2 accelerators', '0 accelerators'."""
    return f"{count} {noun if count == 1 else (plural_noun or noun + 's')}"
