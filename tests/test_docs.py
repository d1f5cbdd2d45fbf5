"""Every pointer in the repository's code and docs leads somewhere inside the repository."""

import os
import re
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.templates.template_support import load

from tests.unit.proxy.proxy_support import moto_server, s3_client

REPO = Path(__file__).resolve().parent.parent
NOT_OURS = {".git", ".aws-sam", "build", "node_modules"}
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".sh", ".toml", ".txt", ".json", ".service"}
# docs/aws-facts.md#signing-rules, in a comment, a docstring or a document.
MENTION = re.compile(r"(?<![\w/.])((?:docs|benchmarks)/[\w./-]+\.md)(#[\w-]+)?")
MARKDOWN_LINK = re.compile(r"\]\((?!https?:|mailto:)([^)\s]*)\)")
OUTSIDE = re.compile(r"REFERENCE\.md|\.\./shared/")


def our_files():
    for path in sorted(REPO.rglob("*")):
        parts = path.relative_to(REPO).parts
        if any(part in NOT_OURS or part.startswith(".venv") for part in parts):
            continue
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.name == "Makefile"):
            yield path


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def without_code(markdown: str) -> str:
    """Markdown without its code blocks and code spans, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M))


def anchors(document: Path) -> set:
    text = re.sub(r"^```.*?^```", "", document.read_text(), flags=re.S | re.M)
    return {github_anchor(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def pointers():
    """(where, target file, anchor or '') for every pointer found."""
    for path in our_files():
        text = path.read_text(errors="replace")
        where = path.relative_to(REPO)
        for found in MENTION.finditer(text):
            yield f"{where}: {found[0]}", REPO / found[1], (found[2] or "").lstrip("#")
        if path.suffix == ".md":
            for found in MARKDOWN_LINK.finditer(without_code(text)):
                target, _, anchor = found[1].partition("#")
                yield f"{where}: {found[0]}", (path.parent / target if target else path), anchor


def test_github_anchors_are_computed_as_github_does():
    assert github_anchor("MLflow's REST API and errors") == "mlflows-rest-api-and-errors"
    assert github_anchor("Use it from an `MLflow` client") == "use-it-from-an-mlflow-client"


def test_every_pointer_resolves():
    broken = []
    for where, target, anchor in pointers():
        if not target.exists():
            broken.append(f"{where} (no such file)")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{where} (no heading #{anchor})")
    assert broken == []


def test_the_pointers_are_found():
    found = {where for where, _, _ in pointers()}
    assert any("signing.py: docs/aws-facts.md#signing-rules" in where for where in found)
    assert any(where.startswith("README.md: ](docs/") for where in found)


def test_nothing_points_outside_the_repository():
    outside = [
        f"{path.relative_to(REPO)}: {found[0]}"
        for path in our_files()
        for found in OUTSIDE.finditer(path.read_text(errors="replace"))
    ]
    assert outside == []


def test_the_bucket_removal_in_the_cleanup_docs_empties_a_versioned_bucket(tmp_path):
    deploy = (REPO / "docs" / "deploy.md").read_text()
    block = re.search(r"<!-- bucket removal:.*?-->\n```bash\n(.*?)```", deploy, re.S)[1]
    script = block.replace("BUCKET=the-bucket-name-printed-above", "BUCKET=retained-artifacts")
    assert script != block
    with moto_server() as url:
        s3 = s3_client(url)
        s3.create_bucket(Bucket="retained-artifacts")
        s3.put_bucket_versioning(
            Bucket="retained-artifacts", VersioningConfiguration={"Status": "Enabled"}
        )
        for version in (b"1", b"2"):
            s3.put_object(Bucket="retained-artifacts", Key="1/run/model.pkl", Body=version)
        s3.delete_object(Bucket="retained-artifacts", Key="1/run/model.pkl")  # a delete marker
        # What `aws s3 rb --force` would face: no current object, and still not empty.
        assert "Contents" not in s3.list_objects_v2(Bucket="retained-artifacts")
        with pytest.raises(ClientError, match="BucketNotEmpty"):
            s3.delete_bucket(Bucket="retained-artifacts")

        result = subprocess.run(
            ["bash", "-c", script],
            cwd=REPO,
            env={
                "PATH": os.environ["PATH"],
                "HOME": str(tmp_path),
                "AWS_ENDPOINT_URL_S3": url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "deleted retained-artifacts\n"
        assert s3.list_buckets()["Buckets"] == []


def deploy_table(heading: str) -> dict:
    """{name: its second column} of a table in docs/deploy.md; `A` / `B` rows give each name."""
    deploy = (REPO / "docs" / "deploy.md").read_text()
    section = re.search(rf"^## {heading}\n(.*?)(?=^## )", deploy, re.S | re.M)[1]
    table = {}
    for row in re.finditer(r"^\| (`[^|]+`) \|([^|]*)\|", section, re.M):
        names = re.findall(r"`(\w+)`", row[1])
        values = [value.strip() for value in row[2].split(" / ")]
        table.update(zip(names, values if len(values) == len(names) else values * len(names)))
    return table


def test_deploy_md_lists_every_root_parameter_with_its_default():
    def written(default):
        return "blank" if default == "" else f"`{default}`"

    parameters = load("template.yaml")["Parameters"]
    table = deploy_table("Parameters")
    assert sorted(table) == sorted(parameters)
    assert {name: table[name] for name in parameters} == {
        name: written(parameter.get("Default")) for name, parameter in parameters.items()
    }


def test_deploy_md_lists_every_root_output():
    assert sorted(deploy_table("Outputs")) == sorted(load("template.yaml")["Outputs"])
