"""`sam build` of the real template: the boto3 layer and the proxy bundle it produces."""

import gzip
import json
import re

import pytest

from packaging_support import (
    ARTIFACT_PROPERTIES,
    REPO,
    artifacts,
    installed_distributions,
    load_cfn,
    pinned_requirements,
)

pytestmark = pytest.mark.slow

BOTO3_LAYER_REQUIREMENTS = REPO / "layers" / "boto3" / "requirements.txt"
MLFLOW_APP_OPERATIONS = {"CreateMlflowApp", "DescribeMlflowApp", "UpdateMlflowApp", "DeleteMlflowApp"}


def built_boto3_layers(build_dir):
    """Directories of the built layers that carry botocore (the layer's python/ parent)."""
    return [init.parents[2] for init in build_dir.rglob("python/botocore/__init__.py")]


def sagemaker_service_model(layer):
    """The newest sagemaker service model in a built layer, read as data, never imported."""
    models = sorted(layer.glob("python/botocore/data/sagemaker/*/service-2.json*"))
    assert models, f"no sagemaker service model in {layer}"
    model_file = models[-1]
    opener = gzip.open if model_file.suffix == ".gz" else open
    with opener(model_file, "rt") as f:
        return json.load(f)


def test_sam_build_builds_the_boto3_layer_with_the_mlflow_app_api(sam_build):
    layers = built_boto3_layers(sam_build)
    assert layers, "no built layer carries python/botocore"
    for layer in layers:
        operations = sagemaker_service_model(layer)["operations"]
        assert MLFLOW_APP_OPERATIONS <= operations.keys(), layer
        installed = installed_distributions(layer / "python")
        for name, version in pinned_requirements(BOTO3_LAYER_REQUIREMENTS).items():
            assert installed.get(name) == version, (layer, name)
        assert not list(layer.rglob("__pycache__")), layer


def test_sam_build_builds_the_proxy_bundle_with_its_vendored_dependencies(sam_build):
    (bundle,) = [path for path in sam_build.rglob("ProxyBundle") if path.is_dir()]
    assert (bundle / "app" / "mlflow_proxy" / "__init__.py").is_file()
    assert (bundle / "app" / "gunicorn.conf.py").is_file()
    assert (bundle / "bootstrap.sh").is_file()
    assert (bundle / "mlflow-proxy.service").is_file()
    installed = installed_distributions(bundle / "vendor")
    for name, version in pinned_requirements().items():
        assert installed.get(name) == version, name
    assert not list(bundle.rglob("__pycache__"))


def test_built_templates_point_every_artifact_at_a_built_directory(sam_build):
    templates = list(sam_build.rglob("template.yaml"))
    checked = 0
    for template_path in templates:
        for logical_id, resource_type, value in artifacts(load_cfn(template_path.read_text())):
            if resource_type == "AWS::CloudFormation::Stack":
                target = template_path.parent / value
                assert target.is_file(), (template_path, logical_id, value)
            else:
                assert isinstance(value, str) and not re.match(r"\w+://", value), (logical_id, value)
                assert (template_path.parent / value).is_dir(), (template_path, logical_id, value)
            checked += 1
    assert checked, f"no resource with one of {sorted(ARTIFACT_PROPERTIES)} in {templates}"
