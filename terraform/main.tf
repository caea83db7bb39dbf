locals {
  functions = toset(["auth", "messages", "admin"])
  # `PROJECT:REGION:INSTANCE` for the Cloud SQL connector (gateway.yaml store.cloud_sql.instance).
  sql_connection_name = google_sql_database_instance.gateway.connection_name
  # The IAM database user of a service account is its email without `.gserviceaccount.com`.
  sql_iam_user = trimsuffix(google_service_account.gateway.email, ".gserviceaccount.com")
  gateway_url  = "https://${var.domain}"
}

# --- APIs -----------------------------------------------------------------------

locals {
  apis = concat(
    [
      "aiplatform.googleapis.com",        # Agent Platform / Vertex AI (Claude models)
      "sqladmin.googleapis.com",          # Cloud SQL Admin (the connector fetches certificates)
      "secretmanager.googleapis.com",     # gateway.yaml and keys
      "run.googleapis.com",               # gen2 functions run on Cloud Run
      "cloudfunctions.googleapis.com",    # the three functions
      "cloudbuild.googleapis.com",        # builds function sources; CI
      "artifactregistry.googleapis.com",  # function images
      "compute.googleapis.com",           # load balancer, VPC
      "servicenetworking.googleapis.com", # private service access (Cloud SQL private IP)
      "vpcaccess.googleapis.com",         # Serverless VPC Access connector
      "certificatemanager.googleapis.com",
      "iam.googleapis.com",
      "logging.googleapis.com",
      "monitoring.googleapis.com",
    ],
    var.use_google_groups ? [
      "admin.googleapis.com",          # Admin SDK Directory API (Workspace groups)
      "cloudidentity.googleapis.com",  # Cloud Identity groups
      "iamcredentials.googleapis.com", # keyless domain-wide delegation (signBlob)
    ] : [],
  )
}

resource "google_project_service" "apis" {
  for_each = toset(local.apis)

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false # other workloads in the project may use them
}
