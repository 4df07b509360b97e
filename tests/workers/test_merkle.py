import numpy as np
import pytest

from workers.verification import build_tree, build_tree_from_array, leaf_bytes, verify_proof
from workers.verification.merkle import hash_leaf, hash_node, proof_length_max


def leaves(count):
    return [leaf_bytes(np.arange(i, i + 4)) for i in range(count)]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 8, 33])
def test_every_proof_verifies(count):
    tree = build_tree(leaves(count))
    for i, leaf in enumerate(leaves(count)):
        assert verify_proof(tree.root, leaf, i, count, tree.proof(i))


def test_single_leaf_root_is_the_leaf_hash_with_an_empty_proof():
    tree = build_tree([b"only"])
    assert tree.root == hash_leaf(b"only").hex()
    assert tree.proof(0) == []


def test_odd_count_carries_the_last_node_up():
    a, b, c = (hash_leaf(x) for x in (b"a", b"b", b"c"))
    assert build_tree([b"a", b"b", b"c"]).root == hash_node(hash_node(a, b), c).hex()


def test_leaf_and_node_hashes_are_domain_separated():
    # A two-leaf tree's root must differ from the hash of a leaf whose bytes are the children.
    a, b = hash_leaf(b"a"), hash_leaf(b"b")
    assert build_tree([b"a", b"b"]).root != hash_leaf(a + b).hex()


def test_array_builder_matches_list_builder():
    rows = np.arange(-30, 30, dtype=np.int64).reshape(6, 10)
    assert build_tree_from_array(rows).root == build_tree(leaf_bytes(r) for r in rows).root


def test_tampered_leaf_fails():
    tree = build_tree(leaves(9))
    assert not verify_proof(tree.root, leaf_bytes(np.arange(3, 7) + 1), 3, 9, tree.proof(3))


def test_tampered_proof_fails():
    tree = build_tree(leaves(9))
    proof = tree.proof(4)
    proof[1] = ("0" if proof[1][0] != "0" else "1") + proof[1][1:]
    assert not verify_proof(tree.root, leaves(9)[4], 4, 9, proof)


def test_wrong_index_fails():
    tree = build_tree(leaves(9))
    assert not verify_proof(tree.root, leaves(9)[4], 5, 9, tree.proof(4))


def test_wrong_leaf_count_fails():
    tree = build_tree(leaves(9))
    assert not verify_proof(tree.root, leaves(9)[8], 8, 12, tree.proof(8))


@pytest.mark.parametrize(
    "proof",
    [None, "abc", [1, 2], ["zz" * 32], ["00" * 32] * 10, [b"\x00" * 32]],
)
def test_malformed_proofs_fail_without_raising(proof):
    tree = build_tree(leaves(4))
    assert not verify_proof(tree.root, leaves(4)[0], 0, 4, proof)


@pytest.mark.parametrize("index", [-1, 4, True, 1.0, None])
def test_bad_index_fails_without_raising(index):
    tree = build_tree(leaves(4))
    assert not verify_proof(tree.root, leaves(4)[1], index, 4, tree.proof(1))


def test_empty_tree_is_refused():
    with pytest.raises(ValueError):
        build_tree([])


# Each test below pins one property an attacker could otherwise exploit; the values expected
# are written out by hand, not taken from the code under test.


def test_leaf_bytes_are_int64_little_endian_whatever_the_input_dtype():
    expected = (1).to_bytes(8, "little", signed=True) + (-2).to_bytes(8, "little", signed=True)
    assert leaf_bytes(np.array([1, -2], dtype=np.int32)) == expected
    assert leaf_bytes(np.array([1, -2], dtype=">i8")) == expected
    assert leaf_bytes([1, -2]) == expected


def test_array_builder_hashes_narrow_integer_rows_as_int64():
    # An agent's output may be int32 (or fp32 holding integers); the commitment must not depend
    # on the dtype it happened to compute in.
    rows32 = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    expected = build_tree(leaf_bytes(r.astype(np.int64)) for r in rows32).root
    assert build_tree_from_array(rows32).root == expected


def test_array_builder_refuses_an_empty_array_and_a_flat_one():
    with pytest.raises(ValueError, match="at least one leaf"):
        build_tree_from_array(np.zeros((0, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="2-D"):
        build_tree_from_array(np.zeros(4, dtype=np.int64))


def test_empty_tree_error_says_why():
    with pytest.raises(ValueError, match="at least one leaf"):
        build_tree([])


@pytest.mark.parametrize("count", [1, 2, 5])
def test_proof_of_a_leaf_past_the_end_is_refused(count):
    tree = build_tree(leaves(count))
    with pytest.raises(IndexError):
        tree.proof(count)
    with pytest.raises(IndexError):
        tree.proof(-1)


def test_single_leaf_tree_accepts_only_index_zero():
    # With one leaf the root is the leaf's hash and the proof is empty, so the index is the
    # only thing that can be wrong: index 1 (== leaf_count) and -1 must both be refused.
    tree = build_tree([b"only"])
    assert verify_proof(tree.root, b"only", 0, 1, [])
    assert not verify_proof(tree.root, b"only", 1, 1, [])
    assert not verify_proof(tree.root, b"only", -1, 1, [])


def test_every_proof_entry_must_be_used():
    # Leaf 2 of a 3-leaf tree is carried up at the first level, so its proof has one entry
    # although a 3-leaf tree allows two: an unused extra entry must make the proof invalid.
    tree = build_tree(leaves(3))
    proof = tree.proof(2)
    assert len(proof) == 1
    assert verify_proof(tree.root, leaves(3)[2], 2, 3, proof)
    assert not verify_proof(tree.root, leaves(3)[2], 2, 3, [*proof, "ab" * 32])


def test_proof_length_bound_is_the_tree_height():
    assert [proof_length_max(c) for c in (1, 2, 3, 4, 5, 8, 9)] == [0, 1, 2, 2, 3, 3, 4]


def test_non_integer_leaf_count_is_refused():
    tree = build_tree(leaves(4))
    assert verify_proof(tree.root, leaves(4)[1], 1, 4, tree.proof(1))
    assert not verify_proof(tree.root, leaves(4)[1], 1, 4.0, tree.proof(1))
    assert not verify_proof(tree.root, leaves(4)[1], 1, True, tree.proof(1))
