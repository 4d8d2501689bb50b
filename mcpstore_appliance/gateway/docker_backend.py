"""The Docker backend (the `docker` SDK against a local engine): one container per session with the limits of
sandbox.md §3 (no network, read-only root, tmpfs /tmp, uid 65534, no capabilities, no-new-privileges, memory,
CPU and pids caps) running the operator's runtime image (packaging/build-runtime-image.sh).

The SDK is synchronous, so its calls run on a thread. The container's stdio is the attach socket, taken
before start (create -> attach_socket -> start), read through asyncio; with tty=False Docker multiplexes
stdout and stderr in frames of an 8-byte header (stream, 0, 0, 0, big-endian length) and the payload.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import uuid
from pathlib import Path

from .runtime import Launch
from .sandbox import SandboxLimits, StderrTail

LABEL = "io.mcpstore.sandbox"


class DockerBackend:
    name = "docker"

    def __init__(self, client, hosted):
        self.client = client
        self.image = hosted.docker_image
        self.mount_usr = hosted.docker_mount_host_usr

    @classmethod
    async def detect(cls, hosted, work_dir: Path) -> "DockerBackend | None":
        try:
            import docker
        except ImportError:
            raise RuntimeError("the docker Python package is not installed") from None

        def connect():
            client = docker.DockerClient(base_url=hosted.docker_host) if hosted.docker_host else docker.from_env()
            client.ping()
            client.images.get(hosted.docker_image)  # raises ImageNotFound with a clear message
            for stale in client.containers.list(all=True, filters={"label": LABEL}):
                stale.remove(force=True)  # left by an appliance that crashed
            return client

        return cls(await asyncio.to_thread(connect), hosted)

    def describe(self) -> str:
        return f"docker (image {self.image}{', host /usr read-only' if self.mount_usr else ''})"

    def _create(self, name: str, bundle_dir: Path, launch: Launch, limits: SandboxLimits):
        volumes = {str(bundle_dir): {"bind": "/app", "mode": "ro"}}
        if self.mount_usr:
            volumes["/usr"] = {"bind": "/usr", "mode": "ro"}
        container = self.client.containers.create(
            self.image, list(launch.argv), name=name, environment=dict(launch.env), working_dir="/app",
            user="65534:65534", stdin_open=True, tty=False, network_mode="none", network_disabled=True,
            read_only=True, tmpfs={"/tmp": f"rw,size={limits.tmpfs_bytes}"}, mem_limit=limits.memory_bytes,
            memswap_limit=limits.memory_bytes, nano_cpus=int(limits.cpus * 1e9), pids_limit=limits.pids,
            cap_drop=["ALL"], security_opt=["no-new-privileges"], init=True, volumes=volumes,
            labels={LABEL: "1"}, log_config={"type": "none"},
            ulimits=[{"Name": "nofile", "Soft": limits.nofile, "Hard": limits.nofile}])
        try:
            attached = container.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            container.start()
        except Exception:
            container.remove(force=True)
            raise
        raw = getattr(attached, "_sock", attached)  # the SDK hands a SocketIO around the stream socket
        return container, socket.socket(fileno=raw.detach()) if hasattr(raw, "detach") else raw

    async def start(self, bundle_dir: Path, launch: Launch, limits: SandboxLimits) -> "DockerSandbox":
        name = f"mcpstore-{uuid.uuid4().hex[:16]}"
        container, sock = await asyncio.to_thread(self._create, name, bundle_dir, launch, limits)
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
        return DockerSandbox(name, container, reader, writer, limits)

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)


class DockerSandbox:
    def __init__(self, name: str, container, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 limits: SandboxLimits):
        self.name = name
        self.container = container
        self.reader = reader
        self.writer = writer
        self.limits = limits
        self.stderr = StderrTail()
        self._killed = False

    async def read(self, n: int) -> bytes:
        """The next stdout payload (stderr frames go to the tail)."""
        while True:
            try:
                header = await self.reader.readexactly(8)
                stream, length = header[0], struct.unpack(">I", header[4:])[0]
                payload = await self.reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError):
                return b""
            if stream == 1:
                return payload
            self.stderr.feed(payload)

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    async def kill(self) -> None:
        if self._killed:
            return
        self._killed = True
        self.writer.close()
        await asyncio.to_thread(self.container.remove, force=True)

    async def exit_reason(self) -> str | None:
        def state():
            self.container.reload()
            return self.container.attrs.get("State", {})

        try:
            info = await asyncio.to_thread(state)
        except Exception:
            return None
        if info.get("OOMKilled"):
            return f"out of memory ({self.limits.memory_bytes // (1024 * 1024)} MB)"
        return None if info.get("Running") else f"exit status {info.get('ExitCode')}"
