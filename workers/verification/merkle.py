"""SHA-256 Merkle tree over benchmark output rows (matmul) or planes (conv2d).

- leaf hash  = SHA-256(0x00 || leaf bytes); node hash = SHA-256(0x01 || left || right).
  The prefixes keep a leaf from ever being read as an inner node (second-preimage attacks).
- Odd count: the last node of a level with no sibling is carried up unchanged; the proof has no
  entry for that level, which is why verification needs `leaf_count`.
- Leaf bytes: the row/plane as int64 little-endian (`leaf_bytes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_HEX_LEN = 64


def leaf_bytes(values: Any) -> bytes:
    """Canonical bytes of one leaf: its integers as int64 little-endian."""
    return np.ascontiguousarray(values, dtype="<i8").tobytes()


def hash_leaf(data: Any) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + bytes(data)).digest()


def hash_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


@dataclass(frozen=True)
class MerkleTree:
    levels: tuple[tuple[bytes, ...], ...]  # levels[0] = leaf hashes, levels[-1] = (root,)

    @property
    def leaf_count(self) -> int:
        return len(self.levels[0])

    @property
    def root(self) -> str:
        return self.levels[-1][0].hex()

    def proof(self, index: int) -> list[str]:
        if not 0 <= index < self.leaf_count:
            raise IndexError(f"leaf {index} out of range 0..{self.leaf_count - 1}")
        path = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling].hex())
            index //= 2
        return path


def _parent_level(level: Sequence[bytes]) -> tuple[bytes, ...]:
    parents = [hash_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        parents.append(level[-1])
    return tuple(parents)


def build_tree(leaves: Iterable[Any]) -> MerkleTree:
    """Build the tree from an iterable of leaf byte strings (or buffers)."""
    level = tuple(hash_leaf(leaf) for leaf in leaves)
    if not level:
        raise ValueError("a Merkle tree needs at least one leaf")
    levels = [level]
    while len(levels[-1]) > 1:
        levels.append(_parent_level(levels[-1]))
    return MerkleTree(tuple(levels))


def build_tree_from_array(leaves: np.ndarray) -> MerkleTree:
    """Tree over the rows of a 2-D array (one leaf per row), hashing rows without copying them.

    For n = 8192 this hashes 512 MiB; converting once to contiguous little-endian int64 and
    handing hashlib row views avoids 8192 bytes objects.
    """
    rows = np.ascontiguousarray(leaves, dtype="<i8")
    if rows.ndim != 2:
        raise ValueError("expected a 2-D array: one leaf per row")

    def hashed(row: np.ndarray) -> bytes:
        h = hashlib.sha256(LEAF_PREFIX)
        h.update(memoryview(row).cast("B"))
        return h.digest()

    level = tuple(hashed(row) for row in rows)
    if not level:
        raise ValueError("a Merkle tree needs at least one leaf")
    levels = [level]
    while len(levels[-1]) > 1:
        levels.append(_parent_level(levels[-1]))
    return MerkleTree(tuple(levels))


def proof_length_max(leaf_count: int) -> int:
    return max(0, (leaf_count - 1).bit_length())


def verify_proof(
    root_hex: str, leaf: bytes, index: int, leaf_count: int, proof: Sequence[str]
) -> bool:
    """Whether `leaf` is leaf `index` of a `leaf_count`-leaf tree with root `root_hex`.

    Never raises: anything malformed is simply not a valid proof.
    """
    try:
        if not (isinstance(index, int) and isinstance(leaf_count, int)):
            return False
        if isinstance(index, bool) or isinstance(leaf_count, bool):
            return False
        if not 0 <= index < leaf_count or not isinstance(proof, list | tuple):
            return False
        if len(proof) > proof_length_max(leaf_count):
            return False
        siblings = []
        for item in proof:
            if not isinstance(item, str) or len(item) != HASH_HEX_LEN:
                return False
            siblings.append(bytes.fromhex(item))
        node = hash_leaf(leaf)
        width, used = leaf_count, 0
        while width > 1:
            sibling = index ^ 1
            if sibling < width:
                if used == len(siblings):
                    return False
                other = siblings[used]
                used += 1
                node = hash_node(other, node) if index % 2 else hash_node(node, other)
            index //= 2
            width = (width + 1) // 2
        return used == len(siblings) and node.hex() == root_hex
    except (ValueError, TypeError):
        return False
