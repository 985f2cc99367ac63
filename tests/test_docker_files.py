"""The files under docker/: the compose file validates with the example settings, the images run
as non-root users and carry no secrets, and the build script reuses an unchanged sandbox image.

The tests marked `docker` need a running Docker Engine. They fail, never skip, when it is missing:
CI must say so loudly."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


def _compose_command() -> list[str]:
    """Compose v2 (`docker compose`) where the plugin is installed, else Debian's docker-compose."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The compose file as compose resolves it, with docker/.env made from .env.example, in a
    copy so that no docker/.env of the developer's is read or touched."""
    work = tmp_path_factory.mktemp("compose")
    shutil.copy(DOCKER / "compose.yaml", work / "compose.yaml")
    shutil.copy(DOCKER / ".env.example", work / ".env")
    result = subprocess.run(
        [*_compose_command(), "-f", "compose.yaml", "config"],
        cwd=work,
        capture_output=True,
        text=True,
        # Compose reads the shell's variables before .env: the test's own REDIS_URL,
        # DATABASE_URL and AGENTHUB_* must not leak into what is checked.
        env={"PATH": os.environ["PATH"], "HOME": str(work)},
    )
    assert result.returncode == 0, f"compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def _final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    instructions = _instructions(dockerfile)
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def _docker(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def engine() -> None:
    assert shutil.which("docker"), "the docker client is not installed (.ci/run installs docker.io)"
    info = _docker("info")
    assert info.returncode == 0, (
        "the Docker Engine does not answer `docker info` (.ci/run starts dockerd):\n" + info.stderr
    )


def _build_script() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DOCKER / "build-sandbox-image.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_compose_file_validates_with_the_example_settings(compose_config: dict) -> None:
    assert set(compose_config["services"]) == {"redis", "postgres", "migrate", "web", "worker"}


def test_web_and_worker_take_their_settings_from_the_env_file(compose_config: dict) -> None:
    for name in ("web", "worker"):
        environment = compose_config["services"][name]["environment"]
        assert environment["AGENTHUB_SECRET_KEY"] == "change-me"  # from .env.example
        assert environment["DATABASE_URL"].startswith("postgres://agenthub:")
        assert environment["DATABASE_URL"].endswith("@postgres:5432/agenthub")
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert environment["AGENTHUB_SANDBOX"] == "docker"


def test_web_and_worker_share_the_data_volume_at_the_data_dir(compose_config: dict) -> None:
    for name in ("web", "worker"):
        service = compose_config["services"][name]
        data_dir = service["environment"]["AGENTHUB_DATA_DIR"]
        assert any(
            str(volume).startswith(f"agenthub-data:{data_dir}") for volume in service["volumes"]
        )


def test_only_the_worker_gets_the_docker_socket(compose_config: dict) -> None:
    with_socket = {
        name
        for name, service in compose_config["services"].items()
        if any("docker.sock" in str(volume) for volume in service.get("volumes", []))
    }
    assert with_socket == {"worker"}


def test_web_and_worker_wait_for_migrations_and_healthy_services(compose_config: dict) -> None:
    services = compose_config["services"]
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "healthcheck" in services[name]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]


@pytest.mark.parametrize("image", ["sandbox", "app"])
def test_image_runs_as_a_non_root_user(image: str) -> None:
    users = [args for name, args in _final_stage(DOCKER / image / "Dockerfile") if name == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")


@pytest.mark.parametrize("image", ["sandbox", "app"])
def test_image_bakes_in_no_secrets(image: str) -> None:
    for name, args in _instructions(DOCKER / image / "Dockerfile"):
        if name in ("ENV", "ARG"):
            assert not SECRET_NAME.search(args), f"{name} {args}"
        if name in ("COPY", "ADD"):
            assert not re.search(r"\.env\b|id_rsa|\.ssh|\.netrc|credentials", args), args


def test_sandbox_image_starts_in_the_workspace_and_is_labelled_as_a_sandbox() -> None:
    dockerfile = dict(_final_stage(DOCKER / "sandbox" / "Dockerfile"))
    assert dockerfile["WORKDIR"] == "/workspace"
    # Not agenthub.sandbox: containers inherit image labels, and that one marks containers for
    # the reaper.
    assert "agenthub.image" in dockerfile["LABEL"]
    assert "agenthub.sandbox" not in dockerfile["LABEL"]


@pytest.mark.docker
def test_build_script_reuses_an_unchanged_sandbox_image(engine: None) -> None:
    first = _build_script()
    assert first.returncode == 0, first.stderr[-3000:]
    second = _build_script()
    assert second.returncode == 0, second.stderr[-3000:]
    assert "reusing agenthub-sandbox:" in second.stderr
    assert "docker build" not in second.stderr
    image_id = second.stdout.split()[-1]
    assert image_id == first.stdout.split()[-1]
    latest = _docker("image", "inspect", "-f", "{{.Id}}", "agenthub-sandbox:latest")
    assert latest.stdout.strip() == image_id


@pytest.mark.docker
def test_sandbox_image_runs_the_builtin_tools_as_the_backend_runs_it(engine: None) -> None:
    script = 'python3 -c "import pytest, bandit"; ruff --version; git --version; id -u; pwd'
    result = _docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--user",
        "4321:4321",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "agenthub-sandbox:latest",
        "sh",
        "-c",
        script,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ruff ")
    assert lines[1].startswith("git version ")
    assert lines[2:] == ["4321", "/workspace"]
