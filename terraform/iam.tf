# The gateway's one identity. The functions (and the GKE alternative, through
# Workload Identity) run as this account; no key for it is ever created: Google
# mints short-lived tokens for the runtime.
resource "google_service_account" "gateway" {
  project      = var.project_id
  account_id   = "claude-gateway"
  display_name = "Claude apps gateway"
  description  = "Runtime identity of the Claude apps gateway functions (no keys)."

  depends_on = [google_project_service.apis]
}

locals {
  # Project-level roles, exactly these; Secret Manager access is granted per
  # secret below, never project-wide.
  gateway_project_roles = toset([
    "roles/aiplatform.user",         # call Claude on Vertex AI
    "roles/cloudsql.client",         # connect through the Cloud SQL connector
    "roles/cloudsql.instanceUser",   # log in with IAM database authentication
    "roles/logging.logWriter",       # structured logs
    "roles/monitoring.metricWriter", # metrics
  ])
}

resource "google_project_iam_member" "gateway" {
  for_each = local.gateway_project_roles

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.gateway.email}"
}

# roles/secretmanager.secretAccessor on the gateway's own secrets only.
resource "google_secret_manager_secret_iam_member" "gateway" {
  for_each = google_secret_manager_secret.gateway

  project   = var.project_id
  secret_id = each.value.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.gateway.email}"
}

# Workspace groups (oidc.google_groups): the gateway impersonates the admin of
# google_groups.admin_email by domain-wide delegation, signing the delegation
# JWT through the IAM Credentials API instead of with a key. That takes the
# token creator role on ITSELF only (not a project role).
resource "google_service_account_iam_member" "gateway_signs_for_itself" {
  count = var.use_google_groups ? 1 : 0

  service_account_id = google_service_account.gateway.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.gateway.email}"
}
