"""The agent's own handling of renters' files: unpacking an input archive never writes outside
the work directory, and collecting results never follows a link out of it."""

import io
import os
import tarfile

import pytest

from tests.workloads.helpers import tar_bytes
from workers.agent.workloads import result_archive, safe_extract


@pytest.mark.parametrize(
    "archive",
    [
        tar_bytes({"/abs.txt": b"x"}),
        tar_bytes({"../up.txt": b"x"}),
        tar_bytes({}, links={"cred": "/root/.config/gpu-marketplace/agent.json"}),
        tar_bytes({}, links={"d/up": "../../x"}),
    ],
    ids=["absolute", "dotdot", "abs-link", "relative-link-out"],
)
def test_unpacking_refuses_entries_outside_the_work_dir(tmp_path, archive):
    work = tmp_path / "work"
    work.mkdir()
    path = tmp_path / "in.tar.gz"
    path.write_bytes(archive)
    with pytest.raises(tarfile.FilterError):
        safe_extract(path, work)
    assert list(work.rglob("*")) == []
    assert not (tmp_path / "up.txt").exists()


def test_unpacking_a_good_archive(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    path = tmp_path / "in.tar.gz"
    path.write_bytes(tar_bytes({"src/a.py": b"print(1)"}, links={"link": "src/a.py"}))
    safe_extract(path, work)
    assert (work / "link").read_bytes() == b"print(1)"


def test_results_keep_links_as_links_and_respect_the_cap(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("agt_do_not_leak")
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    (work / "out" / "model.ckpt").write_bytes(b"w" * 100)
    (work / "out" / "big.bin").write_bytes(b"b" * 1000)
    os.symlink(secret, work / "out" / "leak")
    os.symlink(tmp_path, work / "escape")
    body, note = result_archive(work, ["out", "escape/secret.txt", "missing"], max_bytes=500)
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("out/model.ckpt").read() == b"w" * 100
    assert members["out/leak"].issym() and "out/big.bin" not in members
    assert b"agt_do_not_leak" not in body
    assert "escape/secret.txt (outside the work directory)" in note
    assert "out/big.bin (over the result cap)" in note and "missing (missing)" in note
