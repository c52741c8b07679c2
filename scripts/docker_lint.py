#!/usr/bin/env python3
"""Checks the Dockerfile and deploy/compose.yaml without a container engine.

The Dockerfile is parsed with BuildKit's own parser (the `dockerfile`
package) when it is importable, else line by line; then:
- every base image is pinned to a release (no floating tag such as `1`,
  `bookworm-slim` or `latest`);
- every workspace member of Cargo.toml is copied into the build stage;
- the build is cached (BuildKit cache mounts) and uses the stripped `dist`
  profile, which Cargo.toml must define with `strip = true`;
- the HEALTHCHECK runs `tributary health` without a hard-wired address.
The compose file must parse, pin its images, and start the server only once
Postgres is healthy, with a database URL that names the postgres service.
Prints every problem found and exits 1 if there was one.
"""

import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
problems: list[str] = []


def problem(message: str) -> None:
    problems.append(message)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(COMMAND, rest of the line) for each instruction, continuations joined."""
    try:
        import dockerfile  # BuildKit's parser, through its Python binding
    except ImportError:
        dockerfile = None
    if dockerfile is not None:
        try:
            parsed = dockerfile.parse_file(str(path))
        except dockerfile.GoParseError as error:
            problem(f"{path.name}: BuildKit's parser refuses it: {error}")
            return []
        return [(command.cmd.upper(), command.original.split(None, 1)[1] if " " in command.original else "")
                for command in parsed]
    text = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        command, _, rest = line.partition(" ")
        result.append((command.upper(), rest))
    return result


def pinned(image: str) -> bool:
    """An image named by digest, or by a tag with a full version number."""
    if "@sha256:" in image:
        return True
    _, _, tag = image.rpartition(":")
    return bool(re.match(r"^\d+\.\d+(\.\d+)?(-[a-z0-9.-]+)?$", tag))


def check_dockerfile() -> None:
    path = ROOT / "Dockerfile"
    steps = instructions(path)
    if not steps:
        problem("Dockerfile: no instructions")
        return
    froms = [rest.split()[0] for command, rest in steps if command == "FROM"]
    for image in froms:
        if not pinned(image):
            problem(f"Dockerfile: base image {image} is not pinned to a release")
    copied = set()
    for command, rest in steps:
        if command == "COPY" and "--from" not in rest:
            for source in rest.split()[:-1]:
                copied.add(source.rstrip("/"))
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    for member in cargo["workspace"]["members"]:
        if member == ".":
            for needed in ("Cargo.toml", "Cargo.lock", "build.rs", "src", "proto"):
                if needed not in copied:
                    problem(f"Dockerfile: the root package needs {needed}, which is not copied")
            continue
        top = member.split("/")[0]
        if member not in copied and top not in copied:
            problem(f"Dockerfile: workspace member {member} is not copied; cargo cannot load the workspace")
    runs = " ".join(rest for command, rest in steps if command == "RUN")
    if "--mount=type=cache" not in runs:
        problem("Dockerfile: no BuildKit cache mount: every build recompiles every dependency")
    if "--profile dist" not in runs:
        problem("Dockerfile: the server is not built with the stripped `dist` profile")
    dist = cargo.get("profile", {}).get("dist", {})
    if dist.get("strip") is not True:
        problem("Cargo.toml: [profile.dist] must set strip = true")
    health = [rest for command, rest in steps if command == "HEALTHCHECK"]
    if len(health) != 1:
        problem("Dockerfile: expected exactly one HEALTHCHECK")
    elif "tributary" not in health[0] or "health" not in health[0]:
        problem("Dockerfile: the HEALTHCHECK does not run `tributary health`")
    elif re.search(r"\d+\.\d+\.\d+\.\d+|localhost|--server", health[0]):
        problem("Dockerfile: the HEALTHCHECK hard-wires an address; it must follow TRIBUTARY_LISTEN")


def check_compose() -> None:
    path = ROOT / "deploy" / "compose.yaml"
    try:
        compose = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        problem(f"{path.relative_to(ROOT)}: {error}")
        return
    services = compose.get("services", {})
    postgres, server = services.get("postgres"), services.get("tributary")
    if postgres is None or server is None:
        problem("compose.yaml: needs the services postgres and tributary")
        return
    if not pinned(postgres.get("image", "")):
        problem(f"compose.yaml: postgres image {postgres.get('image')} is not pinned to a release")
    if "healthcheck" not in postgres:
        problem("compose.yaml: postgres has no healthcheck, so the server cannot wait for it")
    condition = server.get("depends_on", {}).get("postgres", {}).get("condition")
    if condition != "service_healthy":
        problem("compose.yaml: tributary must depend on postgres with condition service_healthy")
    url = server.get("environment", {}).get("TRIBUTARY_DATABASE_URL", "")
    if not url.startswith("postgres://") or "@postgres:" not in url:
        problem("compose.yaml: TRIBUTARY_DATABASE_URL must name the postgres service")
    build = server.get("build", {})
    if not (path.parent / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).is_file():
        problem("compose.yaml: the build context does not hold the Dockerfile")


check_dockerfile()
check_compose()
for message in problems:
    print(f"docker lint: {message}")
if problems:
    sys.exit(1)
print("docker lint: Dockerfile and deploy/compose.yaml are fine")
