# The three gen2 functions. Each deploys a zip of functions/<name>/main.py +
# common/ + requirements.txt (`python -m gateway package --out dist`).

resource "google_storage_bucket" "sources" {
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name_prefix}-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # only build artefacts live here
  labels                      = var.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# Content-addressed object names: a changed archive is a new object, which is
# what makes Terraform redeploy the function.
resource "google_storage_bucket_object" "source" {
  for_each = local.functions

  bucket = google_storage_bucket.sources.name
  name   = "${each.key}-${filemd5("${var.source_dir}/${each.key}.zip")}.zip"
  source = "${var.source_dir}/${each.key}.zip"
}

# Builds run as their own account so the runtime account keeps exactly its roles.
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "claude-gateway-build"
  display_name = "Claude apps gateway function builds"

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/artifactregistry.writer",
  ])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.build.email}"
}

resource "google_storage_bucket_iam_member" "build_reads_sources" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

locals {
  # One gunicorn worker process per whole vCPU: a Python process runs on one core at
  # a time (the GIL), so a second vCPU is idle without a second worker. The
  # instance's concurrency is split between the workers, one thread per request.
  workers = { for name, f in var.functions : name => max(1, floor(tonumber(f.cpu))) }

  # Secrets handed to every function as environment variables (their versions
  # always exist: Terraform creates them). gateway.yaml itself is read through
  # the API (GATEWAY_CONFIG) so that new versions are picked up without a deploy.
  secret_env = {
    GATEWAY_JWT_KEY         = "jwt-key"
    GATEWAY_ADMIN_WRITE_KEY = "admin-write"
    GATEWAY_ADMIN_READ_KEY  = "admin-read"
  }
}

resource "google_cloudfunctions2_function" "gateway" {
  for_each = local.functions

  project     = var.project_id
  name        = "${var.name_prefix}-${each.key}"
  location    = var.region
  description = "Claude apps gateway: ${each.key}"
  labels      = var.labels

  build_config {
    runtime         = var.python_runtime
    entry_point     = each.key # functions/<name>/main.py defines def <name>(request)
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source[each.key].name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.gateway.email
    available_cpu                    = var.functions[each.key].cpu
    available_memory                 = var.functions[each.key].memory
    max_instance_request_concurrency = var.functions[each.key].concurrency
    max_instance_count               = var.functions[each.key].max_instances
    min_instance_count               = var.functions[each.key].min_instances
    timeout_seconds                  = var.functions[each.key].timeout_seconds
    all_traffic_on_latest_revision   = true

    # Only the load balancer (and the VPC) reach the functions.
    ingress_settings = "ALLOW_INTERNAL_AND_GCLB"

    # Cloud SQL's private IP through the connector; public Google APIs direct.
    vpc_connector                 = google_vpc_access_connector.gateway.id
    vpc_connector_egress_settings = "PRIVATE_RANGES_ONLY"

    environment_variables = {
      GATEWAY_CONFIG = google_secret_manager_secret.gateway["gateway-yaml"].id
      # functions-framework's gunicorn: WORKERS x THREADS = requests in flight per instance.
      WORKERS   = tostring(local.workers[each.key])
      THREADS   = tostring(ceil(var.functions[each.key].concurrency / local.workers[each.key]))
      LOG_LEVEL = "INFO"
      # The HTTP server's own limits (common/http/server.py; docs/operations.md):
      # request line and headers, and how slowly a request may arrive.
      GATEWAY_LIMIT_REQUEST_LINE        = "8190"
      GATEWAY_LIMIT_REQUEST_FIELDS      = "100"
      GATEWAY_LIMIT_REQUEST_FIELD_SIZE  = "8190"
      GATEWAY_READ_TIMEOUT_SECONDS      = "15"
      GATEWAY_MIN_READ_BYTES_PER_SECOND = "4096"
    }

    dynamic "secret_environment_variables" {
      for_each = local.secret_env
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = google_secret_manager_secret.gateway[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }
  }

  depends_on = [
    google_project_iam_member.gateway,
    google_secret_manager_secret_iam_member.gateway,
    google_secret_manager_secret_version.generated,
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_reads_sources,
    google_sql_user.gateway,
  ]
}

# Claude Code carries the gateway's own session token, not a Google identity,
# so the Cloud Run services admit unauthenticated requests; the network is the
# gate: ingress is internal + load balancer only.
resource "google_cloud_run_service_iam_member" "invoker" {
  for_each = local.functions

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.gateway[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}
