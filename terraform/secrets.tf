# Secret Manager: gateway.yaml and the values it refers to with
# ${secret:projects/P/secrets/NAME/versions/V}. Versions come from variables,
# from random_password (JWT and admin keys), or out of band with
# `gcloud secrets versions add` (docs/deploy.md); Terraform never reads them back.

locals {
  secrets = {
    gateway-yaml       = "gateway.yaml, read by the functions (GATEWAY_CONFIG) and re-read every config_refresh_seconds"
    oidc-client-secret = "OIDC client secret of the gateway's client at the identity provider"
    jwt-key            = "Session JWT signing key (session.jwt_secret)"
    admin-write        = "Admin API write key (admin.write_keys)"
    admin-read         = "Admin API read key (admin.read_keys)"
  }
  generated_keys = toset(["jwt-key", "admin-write", "admin-read"])
}

resource "google_secret_manager_secret" "gateway" {
  for_each = local.secrets

  project   = var.project_id
  secret_id = "${var.name_prefix}-${each.key}"
  labels    = merge(var.labels, { purpose = each.key })
  annotations = {
    description = each.value
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "random_password" "generated" {
  for_each = local.generated_keys

  length  = 48
  special = false # keys travel in headers and YAML unquoted
}

locals {
  generated_values = {
    jwt-key     = var.jwt_signing_key != "" ? var.jwt_signing_key : random_password.generated["jwt-key"].result
    admin-write = lookup(var.admin_keys, "admin-write", random_password.generated["admin-write"].result)
    admin-read  = lookup(var.admin_keys, "admin-read", random_password.generated["admin-read"].result)
  }
}

resource "google_secret_manager_secret_version" "generated" {
  for_each = local.generated_keys

  secret      = google_secret_manager_secret.gateway[each.key].id
  secret_data = local.generated_values[each.key]
}

resource "google_secret_manager_secret_version" "gateway_yaml" {
  count = var.gateway_yaml != "" ? 1 : 0

  secret      = google_secret_manager_secret.gateway["gateway-yaml"].id
  secret_data = var.gateway_yaml
}

resource "google_secret_manager_secret_version" "oidc_client_secret" {
  count = var.oidc_client_secret != "" ? 1 : 0

  secret      = google_secret_manager_secret.gateway["oidc-client-secret"].id
  secret_data = var.oidc_client_secret
}
