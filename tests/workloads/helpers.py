import base64
import io
import tarfile


def tar_bytes(files: dict[str, bytes], *, links: dict[str, str] | None = None, gz=True) -> bytes:
    """A tar(.gz) archive with `files` (name → content) and symlinks (name → target)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz" if gz else "w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return out.getvalue()


def chunk(seq: int, data: bytes, stream: str = "stdout") -> dict:
    return {"seq": seq, "stream": stream, "data_b64": base64.b64encode(data).decode()}
